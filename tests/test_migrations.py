"""Alembic builds the schema from empty on SQLite and PostgreSQL, and it is the models' schema."""

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from models.database import alembic_config, init_db, make_engine
from models.domain import Workspace
from models.enums import CallGoal, CallOutcome, CallStatus, EndReason
from models.tables import Call

PROJECT = Path(__file__).resolve().parent.parent
DOMAIN_TABLES = {
    "workspace",
    "workspace_api_key",
    "strategy_version",
    "lead",
    "call",
    "conversation_thread",
    "chat_message",
    "policy_decision",
    "outreach_attestation",
    "meeting",
    "phone_number",
    "campaign",
    "call_attempt",
}


def schema_drift(engine: sa.Engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def default_workspaces(engine: sa.Engine) -> list[Workspace]:
    with Session(engine) as db:
        return list(db.exec(select(Workspace).where(Workspace.is_default)).all())


def test_migrations_create_every_table_from_empty_and_match_the_models(db_url):
    engine = make_engine(db_url)
    assert sa.inspect(engine).get_table_names() == []

    init_db(engine)

    assert set(sa.inspect(engine).get_table_names()) == DOMAIN_TABLES | {"alembic_version"}
    assert schema_drift(engine) == []
    assert [w.name for w in default_workspaces(engine)] == ["Web form"]
    engine.dispose()


def test_running_the_migrations_again_changes_nothing(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    init_db(engine)

    assert len(default_workspaces(engine)) == 1
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    engine.dispose()


def test_downgrade_to_empty_and_upgrade_again(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    init_db(engine)
    assert schema_drift(engine) == []
    engine.dispose()


def test_the_alembic_command_line_migrates_database_url(db_url):
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "models/migrations/alembic.ini", "upgrade", "head"],
        cwd=PROJECT,
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    engine = make_engine(db_url)
    assert set(sa.inspect(engine).get_table_names()) >= DOMAIN_TABLES
    engine.dispose()


def test_two_processes_starting_at_once_migrate_once(db_url):
    engines = [make_engine(db_url) for _ in range(2)]
    errors: list[BaseException] = []

    def start(engine: sa.Engine) -> None:
        try:
            init_db(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(default_workspaces(engines[0])) == 1
    for engine in engines:
        engine.dispose()


def _legacy_call_table(metadata: sa.MetaData) -> sa.Table:
    """`call` as SQLModel's create_all made it before migrations existed (commit 0dd5845)."""
    return sa.Table(
        "call",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("context_id", sa.String(36), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False, index=True),
        sa.Column("goal", sa.Enum(CallGoal)),
        sa.Column("status", sa.Enum(CallStatus), nullable=False, index=True),
        sa.Column("outcome", sa.Enum(CallOutcome), index=True),
        sa.Column("end_reason", sa.Enum(EndReason)),
        sa.Column("error", sa.String()),
        sa.Column("twilio_call_sid", sa.String(64), index=True),
        sa.Column("telephony_status", sa.String()),
        sa.Column("stt_provider", sa.String()),
        sa.Column("llm_provider", sa.String()),
        sa.Column("tts_provider", sa.String()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("sms_sent", sa.Boolean(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("turn_metrics", sa.JSON(), nullable=False),
    )


def test_a_call_table_from_before_migrations_is_adopted_with_its_rows(db_url):
    engine = make_engine(db_url)
    legacy = _legacy_call_table(sa.MetaData())
    legacy.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            legacy.insert(),
            {
                "id": "c0ffee00-0000-4000-8000-000000000001",
                "context_id": "x",
                "phone": "+14155550123",
                "goal": CallGoal.BOOK_MEETING,
                "status": CallStatus.COMPLETED,
                "outcome": CallOutcome.MEETING_BOOKED,
                "end_reason": EndReason.AGENT_COMPLETED,
                "created_at": datetime(2026, 1, 2, 3, 4, 5),
                "sms_sent": False,
                "transcript": [{"role": "agent", "text": "hello"}],
                "answers": {},
                "turn_metrics": [],
            },
        )

    init_db(engine)

    with Session(engine) as db:
        call = db.get(Call, "c0ffee00-0000-4000-8000-000000000001")
        assert call is not None
        assert (call.status, call.outcome, call.goal) == (CallStatus.COMPLETED, CallOutcome.MEETING_BOOKED, CallGoal.BOOK_MEETING)
        assert call.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert call.transcript == [{"role": "agent", "text": "hello"}]
        assert call.lead_id is None
    assert schema_drift(engine) == []
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT typname FROM pg_type WHERE typname = 'callstatus'")).all() == []
    engine.dispose()
