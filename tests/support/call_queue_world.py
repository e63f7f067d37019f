"""A migrated database with one Los Angeles workspace, a settable clock and a recording dial: the call
queue's tests arrange their world with it (tests/test_call_queue*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from call_queue import attempt_store
from call_queue.campaign_limiter import LocalCampaignLimiter
from call_queue.runner import DialFunction, DialOrder, QueueDeps
from models.call_queue import CallAttempt, Campaign
from models.database import init_db, make_engine
from models.domain import Lead, StrategyVersion, Workspace
from models.enums import CampaignStatus
from models.settings import Settings
from scripts.simulate_call import DEMO_REQUEST

LA = ZoneInfo("America/Los_Angeles")
# Wednesday 10 June 2026, 10:00 in Los Angeles: inside the calling window.
MORNING = datetime(2026, 6, 10, 10, 0, tzinfo=LA).astimezone(UTC)
CALL_REQUEST = {key: value for key, value in DEMO_REQUEST.items() if key != "phone"}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class QueueWorld:
    """A migrated database with one Los Angeles workspace, and a recording dial."""

    db_url: str
    engine: Engine
    settings: Settings
    clock: Clock
    workspace_id: int
    dials: list[DialOrder] = field(default_factory=list)
    # The clock's time at each dial, in order.
    dialed_at: list[datetime] = field(default_factory=list)
    _phones: Iterator[int] = field(default_factory=lambda: iter(range(100, 10_000)))

    def lead(self, **changes) -> Lead:
        with Session(self.engine) as db:
            lead = Lead(
                workspace_id=self.workspace_id,
                phone=f"+1415555{next(self._phones):04d}",
                external_id="x",
                consent=True,
                **changes,
            )
            db.add(lead)
            db.commit()
            db.refresh(lead)
            return lead

    def schedule(
        self, lead: Lead, at: datetime | None = None, campaign: Campaign | None = None, key: str | None = None
    ) -> CallAttempt:
        with Session(self.engine) as db:
            attempt = attempt_store.schedule_call(
                db,
                workspace_id=self.workspace_id,
                lead_id=lead.id,
                call_request={**CALL_REQUEST, "phone": lead.phone},
                scheduled_for=at or self.clock(),
                now=self.clock(),
                campaign_id=campaign.id if campaign else None,
                idempotency_key=key,
            )
            db.commit()
            db.refresh(attempt)
            return attempt

    def campaign(self, **changes) -> Campaign:
        with Session(self.engine) as db:
            strategy = StrategyVersion(
                workspace_id=self.workspace_id, version_number=len(db.exec(select(StrategyVersion)).all()) + 1
            )
            db.add(strategy)
            db.flush()
            fields = {
                "name": "June list",
                "calls_per_minute": 2,
                "max_concurrent_calls": 5,
                "call_template": CALL_REQUEST,
                **changes,
            }
            campaign = Campaign(workspace_id=self.workspace_id, strategy_version_id=strategy.id, **fields)
            db.add(campaign)
            db.commit()
            db.refresh(campaign)
            return campaign

    def attempt(self, attempt_id: int) -> CallAttempt:
        with Session(self.engine) as db:
            return db.get(CallAttempt, attempt_id)

    def attempts(self) -> list[CallAttempt]:
        with Session(self.engine) as db:
            return list(db.exec(select(CallAttempt).order_by(CallAttempt.id)).all())

    def set_campaign_status(self, campaign: Campaign, status: CampaignStatus) -> None:
        with Session(self.engine) as db:
            stored = db.get(Campaign, campaign.id)
            stored.status = status
            db.add(stored)
            db.commit()

    async def record_dial(self, order: DialOrder) -> None:
        self.dials.append(order)
        self.dialed_at.append(self.clock())

    async def sleep(self, seconds: float) -> None:
        """The queue's wait for a campaign's next slot, on the set clock: runs waiting together
        for the same instant move it once."""
        until = self.clock() + timedelta(seconds=seconds)
        await asyncio.sleep(0)
        self.clock.now = max(self.clock.now, until)

    def deps(self, dial: DialFunction | None = None, limiter: LocalCampaignLimiter | None = None) -> QueueDeps:
        return QueueDeps(
            engine=self.engine,
            settings=self.settings,
            dial=dial or self.record_dial,
            limiter=limiter or LocalCampaignLimiter(lease_seconds=600),
            clock=self.clock,
            worker="test-worker",
            sleep=self.sleep,
        )


def make_world(db_url: str, **settings) -> QueueWorld:
    engine = make_engine(db_url)
    init_db(engine)
    with Session(engine) as db:
        workspace = Workspace(name="Acme", timezone="America/Los_Angeles")
        db.add(workspace)
        db.commit()
        workspace_id = workspace.id
    config = Settings(
        _env_file=None, database_url=db_url, **{"queue_lease_seconds": 60, "queue_requeue_seconds": 600, **settings}
    )
    return QueueWorld(db_url, engine, config, Clock(MORNING), workspace_id)
