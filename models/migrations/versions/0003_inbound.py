"""Inbound side: the workspace's phone numbers and business settings, inbound calls, take-over, message moderation.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
# After the call queue's 0002 (campaign, call_attempt).
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the models' column types: a migration must not change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

DEFAULT_AUTO_RESPONSE = "Hi! Sorry we missed your call. How can we help?"
DEFAULT_GREETING_TEMPLATE = "Hello! I'm here to help with your {trade} needs. What can I assist you with today?"


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("workspace") as batch:
        batch.add_column(sa.Column("trade", sa.String(100), nullable=True))
        batch.add_column(sa.Column("language", sa.String(64), nullable=False, server_default="ENGLISH"))
        batch.add_column(sa.Column("auto_response_enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("auto_response_message", sa.Text(), nullable=False, server_default=DEFAULT_AUTO_RESPONSE))
        batch.add_column(sa.Column("ai_greeting_template", sa.Text(), nullable=False, server_default=DEFAULT_GREETING_TEMPLATE))
        batch.add_column(sa.Column("ai_takeover_delay_seconds", sa.Integer(), nullable=False, server_default="60"))
        batch.add_column(sa.Column("webhook_secret", sa.String(128), nullable=True))

    op.create_table(
        "phone_number",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("phone_number", sa.String(16), nullable=False),
        sa.Column("phone_number_sid", sa.String(64), nullable=True),
        sa.Column("messaging_service_sid", sa.String(64), nullable=True),
        sa.Column("capabilities", JSON, nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("forward_to", sa.String(16), nullable=True),
        sa.Column("friendly_name", sa.String(255), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"], name=op.f("fk_phone_number_workspace_id_workspace")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_number")),
        sa.UniqueConstraint("phone_number", name=op.f("uq_phone_number_phone_number")),
        sa.UniqueConstraint("phone_number_sid", name=op.f("uq_phone_number_phone_number_sid")),
    )
    op.create_index(op.f("ix_phone_number_workspace_id"), "phone_number", ["workspace_id"])

    with op.batch_alter_table("call") as batch:
        batch.add_column(sa.Column("direction", sa.String(64), nullable=False, server_default="OUTBOUND"))
        batch.add_column(sa.Column("business_phone", sa.String(16), nullable=True))
        batch.add_column(sa.Column("caller_city", sa.String(100), nullable=True))
        batch.add_column(sa.Column("caller_state", sa.String(50), nullable=True))
        batch.add_column(sa.Column("caller_country", sa.String(3), nullable=True))

    with op.batch_alter_table("lead") as batch:
        batch.add_column(sa.Column("taken_over_at", _when(), nullable=True))

    with op.batch_alter_table("chat_message") as batch:
        batch.add_column(sa.Column("is_flagged", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("flagged_reason", sa.String(255), nullable=True))
        batch.add_column(sa.Column("quality_score", sa.String(10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_message") as batch:
        for column in ("quality_score", "flagged_reason", "is_flagged"):
            batch.drop_column(column)
    with op.batch_alter_table("lead") as batch:
        batch.drop_column("taken_over_at")
    with op.batch_alter_table("call") as batch:
        for column in ("caller_country", "caller_state", "caller_city", "business_phone", "direction"):
            batch.drop_column(column)
    op.drop_index(op.f("ix_phone_number_workspace_id"), table_name="phone_number")
    op.drop_table("phone_number")
    with op.batch_alter_table("workspace") as batch:
        for column in (
            "webhook_secret",
            "ai_takeover_delay_seconds",
            "ai_greeting_template",
            "auto_response_message",
            "auto_response_enabled",
            "language",
            "trade",
        ):
            batch.drop_column(column)
