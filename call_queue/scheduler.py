"""The in-process scheduler: the call queue for a single process without Redis (the demo, one box).

It polls the same schedule with the same `dispatch_due` as Celery beat, and runs each attempt with
the same `run_attempt` as a Celery worker, as an asyncio task of the process that hosts it.
"""

from __future__ import annotations

import asyncio
import contextlib

from call_queue.runner import QueueDeps, dispatch_due, run_attempt
from models.log_config import get_logger

log = get_logger(__name__)

# At shutdown, dials under way get this long to finish before they are cancelled.
STOP_GRACE_SECONDS = 10.0


class InProcessScheduler:
    def __init__(self, deps: QueueDeps) -> None:
        self.deps = deps
        self._wake = asyncio.Event()
        self._poller: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll_forever(), name="call-queue-poller")

    async def wake(self) -> None:
        self._wake.set()

    async def hand_over(self, attempt_id: int) -> None:
        task = asyncio.create_task(run_attempt(self.deps, attempt_id), name=f"call-attempt-{attempt_id}")
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The attempt keeps its claim; the sweep hands it out again once the lease runs out.
            log.error("call_attempt_crashed", error=repr(task.exception()))

    async def poll_once(self) -> list[int]:
        return await dispatch_due(self.deps, self)

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # the database is down: try again at the next poll, lose nothing
                log.error("call_queue_poll_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.deps.settings.queue_poll_seconds)
            self._wake.clear()

    async def drain(self) -> None:
        """Wait for the attempts handed over so far to finish their run (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
