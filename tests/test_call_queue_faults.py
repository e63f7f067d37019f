"""Faults at dial time, with a real PostgreSQL server that goes down (issue 13, item 9): the call is
delayed, never lost and never dialed twice."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from call_queue.runner import DialOrder, run_attempt
from call_queue.scheduler import InProcessScheduler
from models.enums import AttemptStatus
from scripts.local_server import free_port
from tests.support import PostgresServer
from tests.support.call_queue_world import make_world


@pytest.fixture()
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    workdir = Path(tempfile.mkdtemp(prefix="pgfault-"))
    server = PostgresServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_the_database_down_at_dial_time_delays_the_call_and_loses_nothing(own_postgres):
    world = make_world(own_postgres.url(own_postgres.create_database()))
    placed: list[str] = []
    outage = [True]

    async def dial(order: DialOrder) -> None:
        if outage:
            outage.clear()
            own_postgres.stop()  # the database goes down as the call is being placed
            raise OperationalError("INSERT INTO call ...", None, ConnectionRefusedError())
        placed.append(order.call_id)

    attempt = world.schedule(world.lead())
    deps = world.deps(dial=dial)

    with pytest.raises(OperationalError):  # neither the dial's row nor the failure could be stored
        await run_attempt(deps, attempt.id)
    own_postgres.start()
    assert world.attempt(attempt.id).status is AttemptStatus.DIALING  # the last thing the database heard

    # Its worker's lease runs out: it failed as interrupted (whether the phone rang is unknown) and
    # is retried after the backoff, once.
    world.clock.advance(seconds=world.settings.queue_lease_seconds + 1)
    scheduler = InProcessScheduler(deps)
    assert await scheduler.poll_once() == []
    world.clock.advance(hours=1)
    await scheduler.poll_once()
    await scheduler.drain()
    assert await scheduler.poll_once() == []

    first, retry = world.attempts()
    assert (first.status, first.error) == (AttemptStatus.FAILED, "dial interrupted: the worker was lost during the dial")
    assert (retry.status, retry.retry_of_id) == (AttemptStatus.IN_PROGRESS, first.id)
    assert placed == [retry.call_id]
    world.engine.dispose()
