"""Recording, transfer and voicemail: call.recording_path, call.transferred_to, call.voicemail_left,
workspace.transfer_number.

Revision ID: 0004
Revises: 0001 (branches merged in parallel add 0002 and 0003: at merge this revises "0003")
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call") as batch:
        batch.add_column(sa.Column("recording_path", sa.String(500), nullable=True))
        batch.add_column(sa.Column("transferred_to", sa.String(32), nullable=True))
        batch.add_column(sa.Column("voicemail_left", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("workspace") as batch:
        batch.add_column(sa.Column("transfer_number", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspace") as batch:
        batch.drop_column("transfer_number")
    with op.batch_alter_table("call") as batch:
        batch.drop_column("voicemail_left")
        batch.drop_column("transferred_to")
        batch.drop_column("recording_path")
