"""Column types that behave the same on SQLite and PostgreSQL."""

from datetime import UTC, datetime
from enum import Enum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

# Named constraints, so that a later migration can drop or alter them on SQLite too (batch mode
# recreates tables and needs names). Set here, before any table module defines a table.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON on SQLite, JSONB on PostgreSQL (indexable, and `@>` for tag filters).
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

ENUM_LENGTH = 64


def enum_type(enum_cls: type[Enum]) -> sa.Enum:
    """An enum stored by member name in a VARCHAR, not a native PostgreSQL type.

    models/enums.py only ever grows; a native type would need an ALTER TYPE migration
    for every appended member, a VARCHAR needs none.
    """
    return sa.Enum(enum_cls, native_enum=False, length=ENUM_LENGTH, create_constraint=False)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; everything in this project is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both dialects (timestamptz on PostgreSQL)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else as_utc(value)
