"""Build a table row object with every field given, for hot paths.

SQLModel fills each field left out by asking pydantic for its default, and pydantic inspects the
default factory's signature on every call (for `list`, `dict` and `utcnow`, about 0.15 ms each):
a row with ten defaulted fields cost 1.5 ms of CPU, most of POST /calls's ORM time. Filling the
defaults here calls the factories directly and leaves SQLModel nothing to look up.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, SQLModel

RowT = TypeVar("RowT", bound=SQLModel)


def build_row(model: type[RowT], **values: Any) -> RowT:
    for name, field in model.model_fields.items():
        if name not in values:
            factory = field.default_factory
            values[name] = factory() if factory is not None else field.default  # type: ignore[call-arg]
    return model(**values)


@functools.cache
def _insert_returning_id(table: sa.Table) -> sa.Insert:
    # Built once per table; each row's values are bound at execution (building a VALUES clause per
    # call costs more than running the statement).
    return sa.insert(table).returning(table.c.id)


def _column_values(row: SQLModel, leave_out: Collection[str] = ()) -> dict[str, Any]:
    table: sa.Table = row.__table__  # type: ignore[attr-defined]
    return {
        column.name: value
        for column in table.columns
        if column.name not in leave_out and not ((value := getattr(row, column.name)) is None and column.primary_key)
    }


# One row of a chain: its table, the columns given, and each link column with the chain position of
# the earlier row whose new id it takes.
_ChainShape = tuple[tuple[sa.Table, tuple[str, ...], tuple[tuple[str, int], ...]], ...]


@functools.cache
def _chain_statement(shape: _ChainShape) -> sa.Insert:
    # WITH row_0 AS (INSERT ... RETURNING id), row_1 AS (INSERT ... SELECT ..., row_0.id FROM row_0
    # RETURNING id) INSERT ... SELECT ..., row_0.id, row_1.id FROM row_0, row_1 RETURNING id, <links>
    made: list[sa.CTE] = []
    *earlier, (last_table, last_columns, last_links) = shape
    for position, (table, columns, links) in enumerate(earlier):
        made.append(_chain_insert(position, table, columns, links, made).returning(table.c.id).cte(f"row_{position}"))
    last = _chain_insert(len(earlier), last_table, last_columns, last_links, made)
    return last.returning(last_table.c.id, *(last_table.c[column] for column, _ in last_links))


def _chain_insert(
    position: int, table: sa.Table, columns: tuple[str, ...], links: tuple[tuple[str, int], ...], made: list[sa.CTE]
) -> sa.Insert:
    given = [sa.bindparam(f"r{position}_{name}", type_=table.c[name].type) for name in columns]
    if not links:
        return sa.insert(table).values(dict(zip(columns, given, strict=True)))
    linked = [made[earlier] for _, earlier in links]
    # One row each: joined on nothing (a cross join the statement means, said so).
    rows: sa.FromClause = linked[0]
    for row in dict.fromkeys(linked[1:]):
        rows = rows.join(row, sa.true())
    query = sa.select(*given, *(row.c.id for row in linked)).select_from(rows)
    return sa.insert(table).from_select([*columns, *(column for column, _ in links)], query)


def insert_chain(db: Session, *steps: tuple[SQLModel, dict[str, SQLModel]]) -> None:
    """INSERT the rows in order, as insert_row does each, every link column of a row (its dict)
    taking the new id of the earlier row it names; on PostgreSQL in one statement (one round trip),
    elsewhere one INSERT a row. The last row names every earlier one: its RETURNING gives their ids."""
    if len(steps) == 1 or db.get_bind().dialect.name != "postgresql":
        for row, links in steps:
            for column, earlier in links.items():
                setattr(row, column, earlier.id)  # type: ignore[attr-defined]
            insert_row(db, row)
        return
    position = {id(row): at for at, (row, _) in enumerate(steps)}
    last, last_links = steps[-1]
    assert sorted(position[id(earlier)] for earlier in last_links.values()) == list(range(len(steps) - 1))
    shape: list[tuple[sa.Table, tuple[str, ...], tuple[tuple[str, int], ...]]] = []
    values: dict[str, Any] = {}
    for at, (row, links) in enumerate(steps):
        given = _column_values(row, leave_out=links)
        values.update({f"r{at}_{name}": value for name, value in given.items()})
        links_at = tuple((column, position[id(earlier)]) for column, earlier in links.items())
        shape.append((row.__table__, tuple(given), links_at))  # type: ignore[attr-defined]
    last_id, *linked_ids = db.connection().execute(_chain_statement(tuple(shape)), values).one()
    last.id = last_id
    for (column, earlier), linked_id in zip(last_links.items(), linked_ids, strict=True):
        setattr(last, column, linked_id)
        earlier.id = linked_id
    for row, links in steps[:-1]:
        for column, earlier in links.items():
            setattr(row, column, earlier.id)  # type: ignore[attr-defined]


def insert_row(db: Session, row: SQLModel) -> int:
    """INSERT the row in one statement, outside the session's unit of work (which costs about 0.4 ms
    of CPU a row to plan a single insert), and give it the id the database chose. The row is not
    tracked by the session afterwards: for rows written once and only read back by id."""
    table: sa.Table = row.__table__  # type: ignore[attr-defined]
    values = _column_values(row)
    # On the session's connection, not through Session.execute: the ORM's execution path (its
    # compile state, the autoflush) costs more CPU than the INSERT's round trip. Nothing is flushed
    # first, so the row's references must be stored rows already.
    new_id: int = db.connection().execute(_insert_returning_id(table), values).scalar_one()
    row.id = new_id
    return new_id
