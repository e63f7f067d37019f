"""Event loop lag: how late the loop wakes a task that slept, sampled all the time.

Every call of this process shares one event loop; anything that holds it (a decode that keeps the
GIL, a slow callback) delays every call's audio frames by as much. The lag is what an operator needs
to tell "the providers are slow" from "this process is overloaded".
"""

import asyncio

from voice_worker.metrics import EVENT_LOOP_LAG

SAMPLE_EVERY_SECONDS = 0.1


async def watch_event_loop_lag(every_seconds: float = SAMPLE_EVERY_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asleep_at = loop.time()
        await asyncio.sleep(every_seconds)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asleep_at - every_seconds))
