"""The call queue on Celery: real `celery worker` and `celery beat` processes on the test Redis and PostgreSQL.

The workers run tests/support/queue_worker_app.py: the project's tasks, with a dial that records each call id
in Redis. Waiting loops have deadlines only so that a failure ends; nothing asserts on time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from sqlmodel import Session

from call_queue import attempt_store
from call_queue.celery_app import DIAL_TASK, DISPATCH_TASK, QUEUE_NAME, CeleryScheduler, create_celery_app
from models.call_queue import CallAttempt
from models.enums import AttemptStatus
from tests.support.call_queue_world import QueueWorld, make_world
from tests.support.queue_worker_app import DIALS_KEY, record_dial

PROJECT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


class CeleryRig:
    """The database, the broker, and the worker and beat processes of one test."""

    def __init__(self, world: QueueWorld, redis_url: str, workdir: Path, lease_seconds: float) -> None:
        self.world, self.workdir = world, workdir
        self.redis = redis.Redis.from_url(redis_url)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DATABASE_URL": world.db_url,
            # The worker reads the real clock: the test must not depend on the hour it runs at.
            "ENFORCE_CALLING_HOURS": "false",
            "QUEUE_LEASE_SECONDS": str(lease_seconds),
            "QUEUE_POLL_SECONDS": "0.5",
            "LOG_JSON": "false",
        }
        settings = world.settings.model_copy(update={"redis_url": redis_url, "queue_lease_seconds": lease_seconds})
        self.client = create_celery_app(settings, record_dial)  # only sends, like the web process
        self.processes: list[subprocess.Popen] = []

    def start(self, *args: str, name: str, ready: str = "ready.") -> subprocess.Popen:
        log_path = self.workdir / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.support.queue_worker_app", *args],
            cwd=PROJECT,
            env=self.env,
            stdout=open(log_path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            # Its own process group: SIGKILL reaches the pool's children too.
            start_new_session=True,
        )
        self.processes.append(process)
        wait_until(lambda: ready in log_path.read_text(errors="replace") or process.poll() is not None, f"{name} to start")
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        return process

    def worker(self, name: str, pool: str = "solo", concurrency: int = 1) -> subprocess.Popen:
        args = [
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-Q",
            QUEUE_NAME,
            "-n",
            f"{name}@%h",
            "--loglevel=INFO",
        ]
        return self.start(*args, "--without-gossip", "--without-mingle", "--without-heartbeat", name=name)

    def beat(self) -> subprocess.Popen:
        return self.start(
            "beat", "--loglevel=INFO", "--schedule", str(self.workdir / "beat-schedule"), name="beat", ready="beat: Starting"
        )

    def kill(self, process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def send(self, task: str, *args: object) -> None:
        self.client.send_task(task, args=list(args), queue=QUEUE_NAME)

    def dials(self) -> list[str]:
        return [value.decode() for value in self.redis.lrange(DIALS_KEY, 0, -1)]

    def broker_drained(self) -> bool:
        """No message waiting and none delivered but unacknowledged: every task sent has run to its end."""
        return self.redis.llen(QUEUE_NAME) == 0 and self.redis.hlen("unacked") == 0

    def status(self, attempt: CallAttempt) -> AttemptStatus:
        with Session(self.world.engine) as db:
            return db.get(CallAttempt, attempt.id).status


@pytest.fixture()
def celery_rig(postgres_url, clean_redis, tmp_path) -> Iterator[Callable[..., CeleryRig]]:
    made: list[CeleryRig] = []

    def make(lease_seconds: float = 60, **env: str) -> CeleryRig:
        world = make_world(postgres_url)
        made.append(CeleryRig(world, clean_redis.url, tmp_path, lease_seconds))
        made[-1].env.update(env)
        return made[-1]

    yield make
    for rig in made:
        rig.stop_all()
        rig.client.close()
        rig.world.engine.dispose()


def test_beat_hands_due_attempts_to_a_worker_which_dials_each_once(celery_rig):
    rig = celery_rig()
    now = rig.world.clock()
    due = [rig.world.schedule(rig.world.lead(), at=now - timedelta(minutes=1)) for _ in range(3)]
    later = rig.world.schedule(rig.world.lead(), at=now + timedelta(days=3650))

    rig.worker("w1")
    rig.beat()
    wait_until(lambda: len(rig.dials()) == 3, "three dials")
    wait_until(rig.broker_drained, "the queue to drain")

    assert sorted(rig.dials()) == sorted(attempt.call_id for attempt in due)
    assert [rig.status(attempt) for attempt in due] == [AttemptStatus.IN_PROGRESS] * 3
    assert rig.status(later) is AttemptStatus.SCHEDULED


def test_the_same_dial_task_delivered_twice_places_one_call(celery_rig):
    rig = celery_rig()
    attempt = rig.world.schedule(rig.world.lead())
    rig.worker("w1", pool="prefork", concurrency=2)

    rig.send(DIAL_TASK, attempt.id)
    rig.send(DIAL_TASK, attempt.id)
    wait_until(lambda: rig.dials() and rig.broker_drained(), "both deliveries to run")

    assert rig.dials() == [attempt.call_id]
    assert rig.status(attempt) is AttemptStatus.IN_PROGRESS


def test_the_dispatch_task_run_twice_at_once_hands_each_attempt_out_once(celery_rig):
    rig = celery_rig()
    attempts = [rig.world.schedule(rig.world.lead()) for _ in range(6)]
    rig.worker("w1", pool="prefork", concurrency=2)

    rig.send(DISPATCH_TASK)
    rig.send(DISPATCH_TASK)
    wait_until(lambda: len(rig.dials()) >= 6 and rig.broker_drained(), "six dials")

    assert sorted(rig.dials()) == sorted(attempt.call_id for attempt in attempts)


def test_a_scheduler_in_the_web_process_hands_over_through_the_broker(celery_rig):
    import asyncio

    rig = celery_rig()
    attempt = rig.world.schedule(rig.world.lead())
    rig.worker("w1")

    asyncio.run(CeleryScheduler(rig.client).wake())  # as POST /calls will, for a call due now
    wait_until(lambda: rig.dials() and rig.broker_drained(), "the dial")

    assert rig.dials() == [attempt.call_id]


@contextlib.contextmanager
def policy_decisions_locked(db_url: str) -> Iterator[psycopg.Connection]:
    """Hold writes to policy_decision: a worker that reaches the policy step waits there, mid-task."""
    with psycopg.connect(db_url) as connection:
        connection.execute("LOCK TABLE policy_decision IN EXCLUSIVE MODE")
        yield connection
        connection.rollback()


def blocked_on_a_lock(connection: psycopg.Connection) -> bool:
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO policy_decision%'"
    with psycopg.connect(connection.info.dsn, autocommit=True) as observer:
        return observer.execute(query).fetchone()[0] > 0


def test_a_worker_killed_mid_task_loses_no_call_and_the_next_worker_dials_it_once(celery_rig):
    rig = celery_rig(lease_seconds=2)
    attempt = rig.world.schedule(rig.world.lead())
    first = rig.worker("doomed")

    with policy_decisions_locked(rig.world.db_url) as lock:
        rig.send(DIAL_TASK, attempt.id)
        wait_until(lambda: blocked_on_a_lock(lock), "the worker to reach the policy step")
        assert rig.status(attempt) is AttemptStatus.CLAIMED
        rig.kill(first)  # SIGKILL: no goodbye, no acknowledgement, the claim left behind
    assert rig.dials() == []

    rig.worker("survivor")
    wait_until(lambda: rig.dials() and rig.broker_drained(), "the message to be delivered again and run")

    assert rig.dials() == [attempt.call_id]
    assert rig.status(attempt) is AttemptStatus.IN_PROGRESS


def test_a_redis_restart_mid_campaign_loses_no_scheduled_call(celery_rig, clean_redis):
    rig = celery_rig(QUEUE_REQUEUE_SECONDS="2")
    attempts = [rig.world.schedule(rig.world.lead()) for _ in range(4)]
    # Handed out (queued, a message each on the broker), and then Redis restarts without persistence
    # before any worker took them: every message is gone.
    queued = attempt_store.take_due(rig.world.engine, rig.world.clock(), {})
    for attempt_id in queued:
        rig.send(DIAL_TASK, attempt_id)
    clean_redis.restart()
    assert rig.redis.llen(QUEUE_NAME) == 0 and sorted(queued) == sorted(a.id for a in attempts)

    rig.worker("w1")
    rig.beat()
    wait_until(lambda: len(rig.dials()) >= 4 and rig.broker_drained(), "the schedule to hand them out again")

    assert sorted(rig.dials()) == sorted(attempt.call_id for attempt in attempts)
    assert [rig.status(attempt) for attempt in attempts] == [AttemptStatus.IN_PROGRESS] * 4
