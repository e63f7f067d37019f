"""Leaving a message when a machine answers (VOICEMAIL_ACTION=leave_message).

Twilio's asynchronous answering-machine detection with DetectMessageEnd reports a machine only once
its greeting has ended (`machine_end_beep`, `..._silence`, `..._other`). The verdict reaches
POST /twilio/status, possibly in another process, which keeps it in the session store
(after_call/telephony_verdicts.py); this watches that key, and at the verdict cuts whatever the
agent was saying to the greeting, leaves the message and hangs up: outcome `voicemail`,
`voicemail_left`.
"""

import asyncio

from pipecat.frames.frames import InterruptionFrame
from pipecat.pipeline.worker import PipelineWorker

from after_call.telephony_verdicts import MACHINE_ANSWERS, MESSAGE_ENDED, load_progress
from models.enums import CallOutcome, EndReason
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from prompts.voicemail_message import voicemail_message
from services import Services
from voice_worker.call_session import CallSession
from voice_worker.hangup_policy import HangupPolicy
from voice_worker.rule_agent import Phase

log = get_logger(__name__)

POLL_SECONDS = 0.25
INTERRUPTION_SETTLE_SECONDS = 0.3


def watches_for_voicemail(services: Services) -> bool:
    """On Twilio a hang-up on a machine is the control API's REST call; the simulator has no such call."""
    settings = services.settings
    if settings.telephony_provider == "simulator":
        return True
    return settings.voicemail_action == "leave_message" and settings.telephony_provider == "twilio"


def _act_on(answered_by: str | None, action: str) -> bool:
    return answered_by in (MESSAGE_ENDED if action == "leave_message" else MACHINE_ANSWERS)


async def leave_voicemail_at_the_beep(
    services: Services, session: CallSession, worker: PipelineWorker, policy: HangupPolicy
) -> None:
    while not session.ending:
        try:
            progress = await load_progress(services, session.call_id)
        except SessionStoreUnavailable:
            progress = None
        if progress is not None and _act_on(progress.answered_by, services.settings.voicemail_action):
            break
        await asyncio.sleep(POLL_SECONDS)
    else:
        return
    if session.ending:
        return
    if services.settings.voicemail_action == "hang_up":
        log.info("machine_answered_call_ended", call_id=session.call_id, answered_by=progress.answered_by)
        session.agent.phase = Phase.ENDED
        await worker.queue_frame(InterruptionFrame())
        await session.end_call(CallOutcome.VOICEMAIL)
        return
    log.info("voicemail_beep_heard", call_id=session.call_id, answered_by=progress.answered_by)
    # Nothing more to say to the greeting: stop mid-sentence and speak to the recording instead.
    session.agent.phase = Phase.ENDED
    await worker.queue_frame(InterruptionFrame())
    # The interruption crosses the processors asynchronously and drops what is queued behind it on
    # its way: the message must be queued only once it has gone through.
    await asyncio.sleep(INTERRUPTION_SETTLE_SECONDS)
    session.voicemail_left = True
    await policy.say_and_end(
        voicemail_message(session.context, services.settings.twilio_from_number), CallOutcome.VOICEMAIL, EndReason.AGENT_COMPLETED
    )
