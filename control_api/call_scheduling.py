"""The web process's side of the call queue: who dials the attempts POST /calls and campaigns schedule.

Without REDIS_URL (or with QUEUE_RUNNER=in_process) this process polls the schedule and dials
itself (call_queue/scheduler.py); with Celery it only nudges the workers (a dispatch message right
after POST /calls, so a call due now does not wait for beat's next tick).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from call_queue.campaign_limiter import process_campaign_limiter
from call_queue.celery_app import CeleryScheduler, create_celery_app
from call_queue.runner import CallScheduler, QueueDeps
from call_queue.scheduler import InProcessScheduler
from control_api.queued_dial import make_queued_dial
from services import Services


@contextlib.asynccontextmanager
async def running_call_queue(services: Services) -> AsyncIterator[CallScheduler]:
    settings = services.settings
    dial = make_queued_dial(services)
    scheduler: CallScheduler
    if settings.queue_in_process:
        limiter, _owned = process_campaign_limiter(settings)
        scheduler = InProcessScheduler(QueueDeps(engine=services.engine, settings=settings, dial=dial, limiter=limiter))
    else:
        scheduler = CeleryScheduler(create_celery_app(settings, dial))
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
