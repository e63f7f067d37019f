"""What the simulated callee says, scenario by scenario, shaped by the call's context."""

from dataclasses import dataclass

from models.context import ContextInstance
from models.enums import CallGoal


@dataclass(frozen=True)
class CallerLine:
    text: str
    # Seconds of silence after the agent stops talking before the caller answers.
    pause: float = 0.6
    # When set, the caller talks over the agent this many seconds after it starts speaking.
    barge_in_after: float | None = None


_ANSWERS = (
    "i'm the owner and i make the decisions",
    "we have about twenty employees",
    "as soon as possible",
    "our budget is around five hundred dollars a month",
)
_COMMITMENT = {
    CallGoal.BOOK_MEETING: "tuesday at three pm works for me",
    CallGoal.CONFIRM_ORDER: "yes i confirm the order",
    CallGoal.QUALIFY_INTEREST: "yes that sounds good",
}

SCENARIOS = ("happy", "objection", "barge_in", "opt_out", "not_interested", "silent", "voicemail")
# A machine plays its greeting as soon as it picks up, over whatever the agent says.
VOICEMAIL_GREETING = CallerLine("hi you have reached alex please leave a message after the tone", barge_in_after=0.0)


def _answers(context: ContextInstance) -> list[CallerLine]:
    lines = [CallerLine(_ANSWERS[i % len(_ANSWERS)]) for i in range(len(context.qualification_questions))]
    if context.goal in _COMMITMENT and context.commitment_question:
        lines.append(CallerLine(_COMMITMENT[context.goal]))
    return lines


def caller_script(scenario: str, context: ContextInstance) -> list[CallerLine]:
    if scenario == "happy":
        return [CallerLine("yes sure i have a minute"), *_answers(context)]
    if scenario == "objection":
        # One objection on the way, then the happy path: the agent's reply to it is the strategy's.
        return [CallerLine("yes sure i have a minute"), CallerLine("how much does it cost"), *_answers(context)]
    if scenario == "barge_in":
        return [
            CallerLine("sorry who is this", barge_in_after=1.2),
            CallerLine("okay yes i have a minute"),
            *_answers(context),
        ]
    if scenario == "opt_out":
        return [CallerLine("stop calling me")]
    if scenario == "not_interested":
        return [CallerLine("no thanks i'm not interested"), CallerLine("no i'm really not interested")]
    if scenario == "silent":
        return []
    if scenario == "voicemail":
        return [VOICEMAIL_GREETING]
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
