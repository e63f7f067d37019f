"""What the control API opens at start-up and closes at shutdown, beside the worker's deps.

- `app.state.http`: one HTTP client for Turnstile's siteverify;
- `app.state.twilio`: the Twilio account (SMS follow-ups, hanging up on machines), when configured;
- `app.state.context_generator`: OpenAI's call contexts with the template fallback;
- the after-call hooks: Twilio's verdicts first (so later hooks see `voicemail`), the SMS last;
- a task that keeps the active-calls gauge current.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from fastapi import FastAPI

from control_api import metrics
from control_api.sms_followup import sms_followup_hook
from control_api.telephony.call_progress import reconcile_after_call
from prompts.openai_context import ContextGenerator
from voice_worker.worker_deps import WorkerDeps


async def start_control_services(app: FastAPI, deps: WorkerDeps) -> None:
    settings = deps.settings
    app.state.http = httpx.AsyncClient(timeout=10)
    app.state.context_generator = ContextGenerator(settings)
    # The Twilio dialer already holds the account; otherwise open one just for SMS and hang-ups.
    account = getattr(app.state.dialer, "account", None)
    app.state.owns_twilio = account is None and settings.twilio_configured
    if app.state.owns_twilio:
        from control_api.telephony.twilio_dialer import TwilioAccount

        account = TwilioAccount(settings)
    app.state.twilio = account
    deps.on_call_finished.insert(0, reconcile_after_call(deps))
    deps.on_call_finished.append(sms_followup_hook(deps, account))
    app.state.gauge_refresher = asyncio.create_task(metrics.refresh_active_calls(deps.store))


async def stop_control_services(app: FastAPI) -> None:
    app.state.gauge_refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.state.gauge_refresher
    await app.state.context_generator.aclose()
    if app.state.owns_twilio and app.state.twilio is not None:
        await app.state.twilio.aclose()
    await app.state.http.aclose()
