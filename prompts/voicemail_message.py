"""The message the agent leaves on an answering machine: who called, why, and how to call back.

Short on purpose: a machine records a minute at most, and the caller hangs up after the goodbye.
"""

from models.context import ContextInstance
from models.enums import CallGoal

_WHY = {
    CallGoal.BOOK_MEETING: "to set up a short meeting",
    CallGoal.CONFIRM_ORDER: "to confirm your order",
    CallGoal.QUALIFY_INTEREST: "about an offer for you",
    CallGoal.COLLECT_INFO: "with a few quick questions",
}


def voicemail_message(context: ContextInstance, callback_number: str | None) -> str:
    greeting = f"Hello {context.name}," if context.name else "Hello,"
    how = f"call us back at {_spoken_number(callback_number)}" if callback_number else "call us back at this number"
    if context.booking_link:
        how += f", or book at {context.booking_link.split('://', 1)[-1]}"
    return f"{greeting} this is the {context.product} team, calling {_WHY[context.goal]}. Please {how}. Goodbye."


def _spoken_number(number: str) -> str:
    # Digit by digit, so a synthesizer does not read it as one large number.
    return " ".join(number.lstrip("+"))
