"""Call queue: campaigns and call attempts (the schedule of every call, due or future).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the models' column types, as in 0001.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
# The live statuses by member name, frozen: models.enums.LIVE_ATTEMPT_STATUSES at this revision.
LIVE_ATTEMPT = sa.text("status IN ('SCHEDULED', 'QUEUED', 'CLAIMED', 'DIALING', 'IN_PROGRESS')")


def _enum() -> sa.String:
    return sa.String(64)


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("strategy_version_id", sa.Integer(), nullable=False),
        sa.Column("lead_selection", JSON, nullable=False),
        sa.Column("call_template", JSON, nullable=False),
        sa.Column("calls_per_minute", sa.Integer(), nullable=False),
        sa.Column("max_concurrent_calls", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_minutes", JSON, nullable=False),
        sa.Column("status", _enum(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.Column("finished_at", _when(), nullable=True),
        _fk("campaign", "strategy_version_id", "strategy_version"),
        _fk("campaign", "workspace_id", "workspace"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
    )
    op.create_index(op.f("ix_campaign_workspace_id"), "campaign", ["workspace_id"])

    op.create_table(
        "call_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("call_request", JSON, nullable=False),
        sa.Column("scheduled_for", _when(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", _enum(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("outcome", _enum(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("retry_of_id", sa.Integer(), nullable=True),
        sa.Column("policy_decision_id", sa.Integer(), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_at", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        _fk("call_attempt", "campaign_id", "campaign"),
        _fk("call_attempt", "lead_id", "lead"),
        _fk("call_attempt", "policy_decision_id", "policy_decision"),
        _fk("call_attempt", "retry_of_id", "call_attempt"),
        _fk("call_attempt", "workspace_id", "workspace"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_attempt")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_attempt_call_id")),
        sa.UniqueConstraint("retry_of_id", name=op.f("uq_call_attempt_retry_of_id")),
        sa.UniqueConstraint("workspace_id", "idempotency_key", name="uq_call_attempt_idempotency_key"),
    )
    op.create_index(op.f("ix_call_attempt_workspace_id"), "call_attempt", ["workspace_id"])
    op.create_index(op.f("ix_call_attempt_lead_id"), "call_attempt", ["lead_id"])
    op.create_index(op.f("ix_call_attempt_campaign_id"), "call_attempt", ["campaign_id"])
    op.create_index("ix_call_attempt_status_scheduled_for", "call_attempt", ["status", "scheduled_for"])
    op.create_index(
        "uq_call_attempt_one_live_per_lead",
        "call_attempt",
        ["lead_id"],
        unique=True,
        sqlite_where=LIVE_ATTEMPT,
        postgresql_where=LIVE_ATTEMPT,
    )


def downgrade() -> None:
    op.drop_table("call_attempt")
    op.drop_table("campaign")
