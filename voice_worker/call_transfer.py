"""Handing a caller to a person: the workspace's transfer number, and the Twilio handover itself.

The agent says its short handover line and ends its part of the call with the outcome
`transferred`; once that line has played, the end of the stream on Twilio is not a hang-up but a
live update of the call with TwiML that dials the person. Elsewhere (simulator, `none`) the stream
simply ends with that outcome.
"""

import asyncio

from sqlmodel import Session

from models.call_request import mask_phone
from models.domain import Workspace
from models.log_config import get_logger
from models.tables import Call
from services import Services
from voice_worker.call_session import CallSession

log = get_logger(__name__)

# Said by Twilio (<Say>) between the agent's line and the person's phone ringing.
TWILIO_HANDOVER = "Connecting you now."


def _transfer_number(services: Services, call_id: str) -> str | None:
    with Session(services.engine) as db:
        call = db.get(Call, call_id)
        workspace = db.get(Workspace, call.workspace_id) if call is not None and call.workspace_id is not None else None
        return workspace.transfer_number if workspace is not None else None


async def workspace_transfer_number(services: Services, call_id: str) -> str | None:
    """The call's workspace's transfer number; None when it has none or the database cannot say."""
    try:
        return await asyncio.to_thread(_transfer_number, services, call_id)
    except Exception:
        # Without the number the agent offers a callback: a database fault never stops the call.
        log.exception("transfer_number_lookup_failed", call_id=call_id)
        return None


def install_handover(services: Services, session: CallSession, serializer) -> None:
    """On Twilio, a transferred call's end of stream dials the person instead of hanging up."""

    async def hand_over() -> bool:
        number, twilio = session.transferred_to, services.twilio
        if number is None or twilio is None or not session.call_sid:
            return False
        try:
            await twilio.transfer(session.call_sid, number, TWILIO_HANDOVER)
        except Exception as exc:
            log.exception("transfer_failed", call_id=session.call_id, to=mask_phone(number))
            session.error = f"transfer failed: {type(exc).__name__}"[:500]
            return False
        return True

    serializer.instead_of_hang_up = hand_over
