"""The Celery app of the `queue` and `scheduler` processes: `celery -A control_api.queue_worker worker|beat`.

A queue worker dials with the same step as the web process (control_api/queued_dial.py), on the
process's services opened once per worker process, inside the event loop its tasks run in
(call_queue/celery_app.py keeps one loop per process). The call's media stream then reaches any
web process (they share Redis and the database), which records its outcome and runs the after-call
hooks, the call attempt's bookkeeping included.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache

from celery import Celery

from call_queue.celery_app import create_celery_app
from call_queue.runner import DialOrder
from control_api.dial_failures import fail_unanswered_call
from control_api.queued_dial import make_queued_dial
from control_api.telephony.selection import make_dialer
from models.log_config import configure_logging
from models.settings import Settings, get_settings
from services import Services, open_services
from services.dialer import Dialer
from services.twilio_account import TwilioAccount


class _WorkerServices:
    """The services of this worker process, opened on first use in the process that dials (never
    inherited across a fork: a prefork child opens its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._services: Services | None = None
        self._stack = contextlib.AsyncExitStack()

    async def get(self) -> Services:
        if self._services is None or self._pid != os.getpid():
            self._stack = contextlib.AsyncExitStack()
            self._services = await self._stack.enter_async_context(open_services(self.settings, self._dialer))
            self._pid = os.getpid()
        return self._services

    def _dialer(self, settings: Settings, twilio: TwilioAccount | None) -> Dialer:
        async def on_unanswered(call_id: str, reason: str) -> None:
            await fail_unanswered_call(await self.get(), call_id, reason)

        return make_dialer(settings, twilio, on_unanswered=on_unanswered)


@cache
def _app() -> Celery:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    services = _WorkerServices(settings)

    async def dial(order: DialOrder) -> None:
        await make_queued_dial(await services.get())(order)

    return create_celery_app(settings, dial)


def __getattr__(name: str) -> Celery:
    # Built when celery asks for `app`, so importing this module needs no broker.
    if name == "app":
        return _app()
    raise AttributeError(name)
