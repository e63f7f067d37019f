"""POST /calls's nudges to the Celery workers: a lone request's dispatch goes at once; a burst of
requests shares a few dispatches, the last one sent after the last request asked."""

import asyncio

from call_queue.celery_app import DISPATCH_TASK, QUEUE_NAME, CeleryScheduler


class RecordingApp:
    """Stands in for the Celery app: records what would be published, in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def send_task(self, name: str, queue: str) -> None:
        self.log.append(f"sent {name} to {queue}")


def test_a_lone_wake_sends_one_dispatch_at_once():
    log: list[str] = []

    async def one_request() -> None:
        await CeleryScheduler(RecordingApp(log)).wake()  # type: ignore[arg-type]

    asyncio.run(one_request())
    assert log == [f"sent {DISPATCH_TASK} to {QUEUE_NAME}"]


def test_wakes_during_the_spacing_share_one_dispatch_sent_after_the_last_of_them():
    log: list[str] = []

    async def burst() -> None:
        scheduler = CeleryScheduler(RecordingApp(log), wake_spacing_seconds=1.0)  # type: ignore[arg-type]
        first = asyncio.create_task(scheduler.wake())
        while not log:  # the first request's dispatch is sent
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # ... and done with; the next requests come within the spacing
        for n in range(20):
            log.append(f"request {n} committed")
            await scheduler.wake()
        await first

    asyncio.run(burst())
    sent = [i for i, line in enumerate(log) if line.startswith("sent")]
    assert len(sent) == 2  # each request sent its own before: 21
    assert sent[1] > log.index("request 19 committed")  # every request's row is covered by a dispatch after it
