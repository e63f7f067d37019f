"""The call queue on Celery with the Redis broker: beat polls the schedule, workers dial.

- Beat sends `call_queue.dispatch_due` every QUEUE_POLL_SECONDS; a worker runs it: due attempts
  move to queued (one winner) and each gets a `call_queue.dial_attempt` message.
- A worker runs `call_queue.dial_attempt(attempt_id)`: the shared `run_attempt`, which claims the
  attempt in the database before anything else, so a message delivered twice places one call.

Never an ETA task for a later call: the Redis transport redelivers an unacknowledged message after
its visibility timeout, which would dial twice; the database holds the schedule and beat polls it.
Tasks are acknowledged late, so a worker killed mid-task leaves its message to be delivered again
after QUEUE_LEASE_SECONDS (the visibility timeout), when its claim has expired too.

The dial function is injected (`create_celery_app(settings, dial)`), so the module that names the
app for `celery -A` decides what a dial is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from celery import Celery
from celery.signals import worker_process_init

from call_queue.campaign_limiter import make_campaign_limiter, slot_lease_seconds
from call_queue.runner import DialFunction, QueueDeps, dispatch_due, run_attempt
from models.database import make_engine
from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)

DISPATCH_TASK = "call_queue.dispatch_due"
DIAL_TASK = "call_queue.dial_attempt"
QUEUE_NAME = "calls"

T = TypeVar("T")

# Dispatches POST /calls asks for go at most this often under load: a call due now waits at most this
# much longer for its worker, and the web process sends a few messages a second instead of hundreds.
WAKE_SPACING_SECONDS = 0.05


class CeleryScheduler:
    """Hands attempts to Celery workers; polling is beat's, so start and stop have nothing to do."""

    def __init__(self, app: Celery, wake_spacing_seconds: float = WAKE_SPACING_SECONDS) -> None:
        self.app = app
        self.wake_spacing_seconds = wake_spacing_seconds
        self._waking = False
        self._wake_again = False

    async def hand_over(self, attempt_id: int) -> None:
        await asyncio.to_thread(self.app.send_task, DIAL_TASK, args=[attempt_id], queue=QUEUE_NAME)

    async def wake(self) -> None:
        """Wakes coalesce: one dispatch covers every attempt due by the time it runs, so while one is
        being sent, and for WAKE_SPACING_SECONDS after it, more requests only ask for one more after
        that (sent after their rows committed). A lone request's dispatch goes at once; under load
        at most one a spacing goes (a message cost about 0.2 ms of the web process's CPU, and each
        request sent its own: the sends took less time than the gap between requests)."""
        if self._waking:
            self._wake_again = True
            return
        self._waking = True
        try:
            while True:
                self._wake_again = False
                await asyncio.to_thread(self.app.send_task, DISPATCH_TASK, queue=QUEUE_NAME)
                await asyncio.sleep(self.wake_spacing_seconds)
                if not self._wake_again:
                    return
        finally:
            self._waking = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _ProcessState:
    """What one worker process keeps between tasks: its event loop, engine and limiter.

    Built on first use in the process that runs tasks (a prefork child), never inherited across fork.
    """

    def __init__(self, settings: Settings, dial: DialFunction, app: Celery) -> None:
        self.settings, self.dial, self.app = settings, dial, app
        self._lock = threading.Lock()
        self._runner: asyncio.Runner | None = None
        self._deps: QueueDeps | None = None

    def reset(self) -> None:
        # After fork: the parent's loop and connections are not ours to use or close.
        self._runner, self._deps = None, None

    def deps(self) -> QueueDeps:
        if self._deps is None:
            settings = self.settings
            limiter = make_campaign_limiter(settings.redis_url, slot_lease_seconds(settings))
            self._deps = QueueDeps(engine=make_engine(settings.database_url), settings=settings, dial=self.dial, limiter=limiter)
        return self._deps

    def run(self, step: Callable[[QueueDeps], Coroutine[Any, Any, T]]) -> T:
        with self._lock:  # one task at a time per process (prefork, solo); threads would share the loop
            if self._runner is None:
                self._runner = asyncio.Runner()
            deps = self.deps()
            return self._runner.run(step(deps))


def create_celery_app(settings: Settings, dial: DialFunction) -> Celery:
    if not settings.redis_url:
        raise ValueError("the Celery call queue needs REDIS_URL; without it the in-process scheduler runs")
    app = Celery("voice_caller", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE_NAME,
        task_acks_late=True,
        # A child process killed mid-task (OOM, SIGKILL) puts its message back at once.
        task_reject_on_worker_lost=True,
        # One message at a time per process: a prefetched one would wait out a dead worker's timeout too.
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.queue_lease_seconds,
            # Look for messages of dead workers every half lease (kombu's default is about 100 s).
            "unacked_restore_interval": max(1, int(settings.queue_lease_seconds // 2)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "dispatch-due-call-attempts": {
                "task": DISPATCH_TASK,
                "schedule": timedelta(seconds=settings.queue_poll_seconds),
                # Ticks that waited behind a backlog are dropped: the next one sees the same schedule.
                "options": {"queue": QUEUE_NAME, "expires": settings.queue_poll_seconds * 5},
            }
        },
    )
    state = _ProcessState(settings, dial, app)
    scheduler = CeleryScheduler(app)

    @app.task(name=DISPATCH_TASK)
    def dispatch_due_attempts() -> int:
        return len(state.run(lambda deps: dispatch_due(deps, scheduler)))

    @app.task(name=DIAL_TASK)
    def dial_attempt(attempt_id: int) -> str:
        return state.run(lambda deps: run_attempt(deps, attempt_id)).value

    @worker_process_init.connect(weak=False)
    def _fresh_state_after_fork(**_kwargs) -> None:
        state.reset()

    return app
