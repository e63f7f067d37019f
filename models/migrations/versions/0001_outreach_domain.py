"""Outreach domain: workspaces, API keys, strategies, leads, calls, conversations, policy audit.

Creates everything from empty, `call` included. A database made before migrations existed
(`call` created by SQLModel's create_all) is adopted: its `call` table gains the new columns.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the models' column types: a migration must not change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _enum() -> sa.String:
    # Enums are stored by member name in a VARCHAR (models/column_types.enum_type).
    return sa.String(64)


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))


def _index(table: str, *columns: str, name: str | None = None, unique: bool = False, **kw) -> None:
    op.create_index(name or op.f(f"ix_{table}_{columns[0]}"), table, list(columns), unique=unique, **kw)


CALL_LINKS = (("workspace_id", "workspace"), ("lead_id", "lead"), ("strategy_version_id", "strategy_version"))


def upgrade() -> None:
    op.create_table(
        "workspace",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("budget_tier", _enum(), nullable=False),
        sa.Column("business_hours", JSON, nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        _pk("workspace"),
    )
    op.create_table(
        "workspace_api_key",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("revoked_at", _when(), nullable=True),
        _fk("workspace_api_key", "workspace_id", "workspace"),
        _pk("workspace_api_key"),
        sa.UniqueConstraint("key_hash", name=op.f("uq_workspace_api_key_key_hash")),
    )
    _index("workspace_api_key", "workspace_id")

    op.create_table(
        "strategy_version",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("status", _enum(), nullable=False),
        sa.Column("tone", sa.Text(), nullable=False),
        sa.Column("objectives", sa.Text(), nullable=False),
        sa.Column("objection_handling", sa.Text(), nullable=False),
        sa.Column("cta_rules", sa.Text(), nullable=False),
        sa.Column("followup_preset", _enum(), nullable=False),
        sa.Column("interval_overrides", JSON, nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("activated_at", _when(), nullable=True),
        _fk("strategy_version", "workspace_id", "workspace"),
        _pk("strategy_version"),
        sa.UniqueConstraint("workspace_id", "version_number", name="uq_strategy_version_number"),
    )
    _index("strategy_version", "workspace_id")
    active_only = sa.text("status = 'ACTIVE'")
    _index(
        "strategy_version",
        "workspace_id",
        name="uq_strategy_version_one_active",
        unique=True,
        sqlite_where=active_only,
        postgresql_where=active_only,
    )

    op.create_table(
        "lead",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("stage", _enum(), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("consent_at", _when(), nullable=True),
        sa.Column("consent_source", sa.String(64), nullable=True),
        sa.Column("opted_out_at", _when(), nullable=True),
        sa.Column("opt_out_source", _enum(), nullable=True),
        sa.Column("last_followup_at", _when(), nullable=True),
        sa.Column("next_followup_at", _when(), nullable=True),
        sa.Column("last_followup_review_at", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        _fk("lead", "workspace_id", "workspace"),
        _pk("lead"),
        sa.UniqueConstraint("workspace_id", "phone", name="uq_lead_workspace_phone"),
    )
    _index("lead", "external_id")
    _index("lead", "workspace_id")
    _index("lead", "workspace_id", "stage", name="ix_lead_workspace_stage")

    if "call" in sa.inspect(op.get_bind()).get_table_names():
        _adopt_legacy_call_table()
    else:
        _create_call_table()

    op.create_table(
        "conversation_thread",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("channel", _enum(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        _fk("conversation_thread", "lead_id", "lead"),
        _fk("conversation_thread", "workspace_id", "workspace"),
        _pk("conversation_thread"),
        sa.UniqueConstraint("lead_id", "channel", name="uq_conversation_thread_lead_channel"),
    )
    _index("conversation_thread", "workspace_id")

    op.create_table(
        "chat_message",
        _id(),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(36), nullable=True),
        sa.Column("role", _enum(), nullable=False),
        sa.Column("sender_type", _enum(), nullable=False),
        sa.Column("sender_name", sa.String(255), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("message_type", sa.String(50), nullable=False),
        sa.Column("tool_calls", JSON, nullable=True),
        sa.Column("delivery_status", _enum(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("external_message_id", sa.String(255), nullable=True),
        sa.Column("external_conversation_id", sa.String(255), nullable=True),
        sa.Column("external_platform", sa.String(100), nullable=True),
        sa.Column("message_metadata", JSON, nullable=False),
        sa.Column("prompt_used", sa.Text(), nullable=True),
        sa.Column("model_used", sa.String(100), nullable=True),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("token_usage", JSON, nullable=True),
        sa.Column("timing", JSON, nullable=True),
        sa.Column("parent_message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.Column("sent_at", _when(), nullable=True),
        sa.Column("delivered_at", _when(), nullable=True),
        sa.Column("read_at", _when(), nullable=True),
        _fk("chat_message", "call_id", "call"),
        _fk("chat_message", "lead_id", "lead"),
        sa.ForeignKeyConstraint(
            ["parent_message_id"], ["chat_message.id"], name=op.f("fk_chat_message_parent_message_id_chat_message")
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["conversation_thread.id"], name=op.f("fk_chat_message_thread_id_conversation_thread")
        ),
        _pk("chat_message"),
    )
    _index("chat_message", "call_id")
    _index("chat_message", "external_conversation_id", name="ix_chat_message_external_conversation")
    _index("chat_message", "lead_id", "created_at", name="ix_chat_message_lead_created")
    _index("chat_message", "sender_type", "delivery_status", name="ix_chat_message_sender_delivery")
    _index("chat_message", "thread_id", "created_at", name="ix_chat_message_thread_created")

    op.create_table(
        "policy_decision",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(36), nullable=True),
        sa.Column("channel", _enum(), nullable=False),
        sa.Column("allow_send", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("rule_trace", JSON, nullable=False),
        sa.Column("next_allowed_at", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        _fk("policy_decision", "call_id", "call"),
        _fk("policy_decision", "lead_id", "lead"),
        _fk("policy_decision", "workspace_id", "workspace"),
        _pk("policy_decision"),
    )
    _index("policy_decision", "lead_id", "created_at", name="ix_policy_decision_lead_created")
    _index("policy_decision", "workspace_id")

    op.create_table(
        "outreach_attestation",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.String(200), nullable=False),
        sa.Column("timestamp", _when(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        _fk("outreach_attestation", "lead_id", "lead"),
        _fk("outreach_attestation", "workspace_id", "workspace"),
        _pk("outreach_attestation"),
    )
    _index("outreach_attestation", "workspace_id", "lead_id", name="ix_outreach_attestation_workspace_lead")

    op.create_table(
        "meeting",
        _id(),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(36), nullable=True),
        sa.Column("slot_text", sa.String(500), nullable=True),
        sa.Column("slot_at", _when(), nullable=True),
        sa.Column("link", sa.String(500), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        _fk("meeting", "call_id", "call"),
        _fk("meeting", "lead_id", "lead"),
        _fk("meeting", "workspace_id", "workspace"),
        _pk("meeting"),
        sa.UniqueConstraint("call_id", name=op.f("uq_meeting_call_id")),
    )
    _index("meeting", "lead_id")
    _index("meeting", "workspace_id")

    # The anonymous web form's calls need a workspace for the policy to apply to them.
    workspace = sa.table(
        "workspace",
        sa.column("name", sa.String),
        sa.column("timezone", sa.String),
        sa.column("budget_tier", sa.String),
        sa.column("business_hours", JSON),
        sa.column("is_default", sa.Boolean),
        sa.column("created_at", _when()),
    )
    op.bulk_insert(
        workspace,
        [
            {
                "name": "Web form",
                "timezone": "UTC",
                "budget_tier": "GREEN",
                "business_hours": None,
                "is_default": True,
                "created_at": datetime.now(UTC),
            }
        ],
    )


def _call_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("context_id", sa.String(36), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("goal", _enum(), nullable=True),
        sa.Column("status", _enum(), nullable=False),
        sa.Column("outcome", _enum(), nullable=True),
        sa.Column("end_reason", _enum(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("twilio_call_sid", sa.String(64), nullable=True),
        sa.Column("telephony_status", sa.String(), nullable=True),
        sa.Column("stt_provider", sa.String(), nullable=True),
        sa.Column("llm_provider", sa.String(), nullable=True),
        sa.Column("tts_provider", sa.String(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("started_at", _when(), nullable=True),
        sa.Column("ended_at", _when(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("sms_sent", sa.Boolean(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("turn_metrics", sa.JSON(), nullable=False),
    ]


def _create_call_table() -> None:
    op.create_table(
        "call",
        *_call_columns(),
        *(sa.Column(column, sa.Integer(), nullable=True) for column, _ in CALL_LINKS),
        *(_fk("call", column, target) for column, target in CALL_LINKS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call")),
    )
    for column in ("phone", "status", "outcome", "twilio_call_sid", "workspace_id", "lead_id"):
        _index("call", column)


def _adopt_legacy_call_table() -> None:
    """Bring a create_all-era `call` table to this revision without losing a row."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    # On PostgreSQL create_all made native enum types and zone-less timestamps; both are converted.
    with op.batch_alter_table("call") as batch:
        for name in ("goal", "status", "outcome", "end_reason"):
            batch.alter_column(name, type_=_enum(), postgresql_using=f"{name}::text")
        for name in ("created_at", "started_at", "ended_at"):
            batch.alter_column(name, type_=_when(), postgresql_using=f"{name} AT TIME ZONE 'UTC'")
        for column, target in CALL_LINKS:
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
            batch.create_foreign_key(op.f(f"fk_call_{column}_{target}"), target, [column], ["id"])
    if postgres:
        for type_name in ("callgoal", "callstatus", "calloutcome", "endreason"):
            op.execute(f"DROP TYPE IF EXISTS {type_name}")
    existing = {index["name"] for index in sa.inspect(bind).get_indexes("call")}
    for column in ("phone", "status", "outcome", "twilio_call_sid", "workspace_id", "lead_id"):
        if f"ix_call_{column}" not in existing:
            _index("call", column)


def downgrade() -> None:
    for table in (
        "meeting",
        "outreach_attestation",
        "policy_decision",
        "chat_message",
        "conversation_thread",
        "call",
        "lead",
        "strategy_version",
        "workspace_api_key",
        "workspace",
    ):
        op.drop_table(table)
