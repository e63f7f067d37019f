"""What a queue worker does to place one call attempt: context, session, call row, then the dialer.

The queue (call_queue/runner.py) has claimed the attempt, re-checked the outreach policy and marked
it dialing before this runs; this is the step that needs the process's services (the context
generator, the session store, the dialer), which is why it lives with the API and not below it.
It runs in the web process (in-process scheduler) or in a Celery queue worker (control_api/queue_worker.py).

A dial the provider refuses is recorded through the one outcome writer (the call fails with its
reason, and its attempt is closed and retried by the after-call hook) and then re-raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlmodel import Session

from call_queue.policy_facts import call_strategy
from call_queue.runner import DialFunction, DialOrder
from control_api import metrics as control_metrics
from control_api.dial_failures import record_dial_failure
from models.call_job import CallJob
from models.call_queue import CallAttempt
from models.call_request import CallRequest, mask_phone
from models.context import ContextStrategy
from models.conversation_history import Message, history_for_context
from models.domain import PolicyDecision
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services
from services.dialer import dial_failure_reason

log = get_logger(__name__)


class NumberInLiveCall(Exception):
    """Another call to this number is under way; the attempt fails and is retried after its backoff."""


@dataclass(frozen=True)
class _CallSetting:
    strategy: ContextStrategy | None
    history: list[Message]


def _setting(services: Services, order: DialOrder) -> _CallSetting:
    # The strategy is read here, where the context is built; the worker only ever sees the context.
    with Session(services.engine) as db:
        strategy = call_strategy(db, order.workspace_id, order.strategy_version_id)
        in_context = ContextStrategy.model_validate(strategy) if strategy is not None else None
        return _CallSetting(in_context, history_for_context(db, order.lead_id))


def _store_call_row(services: Services, order: DialOrder, job: CallJob, goal, strategy_version_id: int | None) -> None:
    with Session(services.engine) as db:
        db.add(
            Call(
                id=str(job.id),
                context_id=str(job.context_id),
                phone=job.phone,
                goal=goal,
                created_at=job.created_at,
                workspace_id=order.workspace_id,
                lead_id=order.lead_id,
                strategy_version_id=strategy_version_id,
            )
        )
        db.flush()
        # The decision taken right before this dial points at the call it let through.
        attempt = db.get(CallAttempt, order.attempt_id)
        decision = db.get(PolicyDecision, attempt.policy_decision_id) if attempt and attempt.policy_decision_id else None
        if decision is not None:
            decision.call_id = str(job.id)
            db.add(decision)
        db.commit()


def make_queued_dial(services: Services) -> DialFunction:
    async def dial(order: DialOrder) -> None:
        call_request = CallRequest.model_validate(order.call_request)
        setting = await asyncio.to_thread(_setting, services, order)
        with control_metrics.STAGE_LATENCY.labels("context").time():
            context = await services.context_generator.generate(call_request, history=setting.history, strategy=setting.strategy)
        control_metrics.CONTEXTS_GENERATED.labels(context.source.value).inc()
        job = CallJob(id=order.call_id, context_id=context.id, phone=call_request.phone)
        holder = await services.store.claim_phone(job.phone, job.id)
        if holder is not None and str(holder) != str(job.id):
            raise NumberInLiveCall(f"the number is in call {holder}")
        await services.store.save_call(job, context)
        strategy_version_id = context.strategy.id if context.strategy else None
        await asyncio.to_thread(_store_call_row, services, order, job, context.goal, strategy_version_id)
        try:
            with control_metrics.STAGE_LATENCY.labels("dial").time():
                dialed = await services.dialer.dial(job, context)
        except Exception as exc:
            reason = f"dial failed: {dial_failure_reason(exc)}"
            log.error("dial_failed", call_id=str(job.id), error=reason)
            await record_dial_failure(services, job, reason)
            raise
        if dialed.twilio_call_sid:
            job.twilio_call_sid = dialed.twilio_call_sid
            try:
                await services.store.update_job(job)
            except SessionStoreUnavailable:
                log.warning("session_update_failed_after_dial", call_id=str(job.id))
        log.info(
            "call_dialed",
            call_id=str(job.id),
            attempt_id=order.attempt_id,
            attempt=order.attempt,
            phone=mask_phone(job.phone),
            goal=context.goal.value,
            telephony=services.settings.telephony_provider,
            context_source=context.source.value,
        )
        control_metrics.CALLS_CREATED.labels(services.settings.telephony_provider).inc()

    return dial
