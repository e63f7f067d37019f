"""The rule-based agent: walks the generated context without an LLM.

It is the offline default and what takes over when the LLM fails mid-call, so
everything it says comes from the context (opening, questions, objection
handlers, commitment question, closing); only short acknowledgements are its own.
"""

from dataclasses import dataclass
from enum import StrEnum

from models.context import ContextInstance
from models.enums import CallGoal, CallOutcome, EndReason
from prompts.caller_intent import OBJECTIONS, Intent, classify, mentions_time

_ACKS = ("Thank you.", "Got it.", "Great, thanks.", "Understood.")
_GOODBYE_OPT_OUT = "I'm sorry for the interruption. I've removed your number and you won't be called again. Goodbye."
_GOODBYE_CALLBACK = "No problem at all, we'll call you back at a better time. Goodbye."
_GOODBYE_NOT_INTERESTED = "Understood, thank you for your time. Have a good day. Goodbye."
_HANDOVER = "Of course. I'm connecting you with a colleague now, please hold."
_OFFER_CALLBACK = "I'm sorry, nobody from the team is available to take the call right now. Would you like us to call you back?"
_REPROMPT = "Are you still there?"
_SILENCE_GOODBYE = "It seems I've lost you. We'll try again another time. Goodbye."
_MAX_DURATION_GOODBYE = "I'm sorry, I need to wrap up the call now. Thank you for your time. Goodbye."


class Phase(StrEnum):
    OPENING = "opening"
    QUESTIONS = "questions"
    COMMITMENT = "commitment"
    ENDED = "ended"


@dataclass(frozen=True)
class AgentReply:
    text: str
    # When set, the call ends once this reply has been spoken.
    end_outcome: CallOutcome | None = None
    end_reason: EndReason | None = None


_GOAL_OUTCOME = {
    CallGoal.BOOK_MEETING: CallOutcome.MEETING_BOOKED,
    CallGoal.CONFIRM_ORDER: CallOutcome.ORDER_CONFIRMED,
    CallGoal.QUALIFY_INTEREST: CallOutcome.QUALIFIED,
    CallGoal.COLLECT_INFO: CallOutcome.INFO_COLLECTED,
}


class RuleBasedAgent:
    def __init__(self, context: ContextInstance, can_transfer: bool = False) -> None:
        self.context = context
        self.can_transfer = can_transfer
        self._callback_offered = False
        self.phase = Phase.OPENING
        self.answers: dict[str, str] = {}
        self.caller_spoke = False
        self._question_index = 0
        self._refusals = 0
        self._unclear_commitments = 0
        self._turns = 0
        self._last_asked = context.opening_line

    # --- what the agent says unprompted -------------------------------------------------
    def opening(self) -> str:
        return self.context.opening_line

    def reprompt(self) -> str:
        return f"{_REPROMPT} {self._last_asked}"

    def silence_goodbye(self) -> AgentReply:
        return self._end(_SILENCE_GOODBYE, self.provisional_outcome(), EndReason.SILENCE_TIMEOUT)

    def max_duration_goodbye(self) -> AgentReply:
        return self._end(_MAX_DURATION_GOODBYE, self.provisional_outcome(), EndReason.MAX_DURATION)

    def keypad_opt_out(self) -> AgentReply:
        return self._end(_GOODBYE_OPT_OUT, CallOutcome.OPTED_OUT, EndReason.OPT_OUT)

    # --- answering the caller -----------------------------------------------------------
    def reply(self, caller_text: str) -> AgentReply:
        if self.phase is Phase.ENDED:
            return AgentReply("")
        if caller_text.strip():
            self.caller_spoke = True
        self._turns += 1
        intent = classify(caller_text)

        if intent is Intent.OPT_OUT:
            return self._end(_GOODBYE_OPT_OUT, CallOutcome.OPTED_OUT, EndReason.OPT_OUT)
        if intent is Intent.CALLBACK or (self._callback_offered and intent is Intent.YES):
            return self._end(_GOODBYE_CALLBACK, CallOutcome.CALLBACK_REQUESTED)
        self._callback_offered = False
        if intent is Intent.HUMAN:
            return self.human_requested()
        if intent is Intent.NOT_INTERESTED or (intent is Intent.NO and self.phase is not Phase.QUESTIONS):
            return self._refused()
        if intent in OBJECTIONS:
            return self._handle_objection(intent)

        if self.phase is Phase.OPENING:
            return self._ask_next_question(ack="Great.")
        if self.phase is Phase.QUESTIONS and self._question_index < len(self.context.qualification_questions):
            question = self.context.qualification_questions[self._question_index]
            self.answers[question] = caller_text.strip()
            self._question_index += 1
            return self._ask_next_question(ack=_ACKS[self._turns % len(_ACKS)])
        return self._commitment_answer(intent, caller_text)

    def human_requested(self) -> AgentReply:
        """The caller asked for a person: hand over when the workspace has someone, else offer a callback."""
        if self.can_transfer:
            return self._end(_HANDOVER, CallOutcome.TRANSFERRED)
        self._callback_offered = True
        self._last_asked = _OFFER_CALLBACK
        return AgentReply(_OFFER_CALLBACK)

    def take_over(self, caller_turns: int) -> None:
        """Pick the walk up mid-call, after another responder (the LLM) handled the first turns."""
        if self.phase is not Phase.OPENING or caller_turns <= 1:
            return
        self.caller_spoke = True
        self._question_index = min(caller_turns - 1, len(self.context.qualification_questions))
        self.phase = Phase.QUESTIONS if self._question_index < len(self.context.qualification_questions) else Phase.COMMITMENT

    def provisional_outcome(self) -> CallOutcome:
        """What the call achieved so far, for a call that ends before the agent closes it."""
        if not self.caller_spoke:
            return CallOutcome.NO_ANSWER
        if self.context.goal is CallGoal.COLLECT_INFO and self.answers:
            return CallOutcome.INFO_COLLECTED
        if self.context.qualification_questions and len(self.answers) == len(self.context.qualification_questions):
            return CallOutcome.QUALIFIED
        return CallOutcome.NOT_INTERESTED

    # --- steps ----------------------------------------------------------------------------
    def _ask(self, text: str, question: str) -> AgentReply:
        self._last_asked = question
        return AgentReply(f"{text} {question}".strip())

    def _ask_next_question(self, ack: str) -> AgentReply:
        questions = self.context.qualification_questions
        if self._question_index < len(questions):
            self.phase = Phase.QUESTIONS
            return self._ask(ack, questions[self._question_index])
        if self.context.commitment_question:
            self.phase = Phase.COMMITMENT
            return self._ask(ack, self.context.commitment_question)
        return self._close(ack, _GOAL_OUTCOME[self.context.goal])

    def _commitment_answer(self, intent: Intent, caller_text: str) -> AgentReply:
        goal = self.context.goal
        if goal is CallGoal.BOOK_MEETING:
            if intent is Intent.TIME_PROPOSAL or mentions_time(caller_text):
                self.answers["meeting_time"] = caller_text.strip()
                return self._close("Perfect, I'll book that time for you.", CallOutcome.MEETING_BOOKED)
            if intent is Intent.YES and self._unclear_commitments == 0:
                self._unclear_commitments += 1
                return self._ask("Great.", "Which day and time suits you best?")
        elif intent is Intent.YES:
            return self._close("Wonderful.", _GOAL_OUTCOME[goal])
        self._unclear_commitments += 1
        if self._unclear_commitments >= 2:
            return self._close("Thank you.", self.provisional_outcome())
        return self._ask("Sorry, I didn't quite catch that.", self.context.commitment_question or "")

    def _handle_objection(self, intent: Intent) -> AgentReply:
        handler = self.context.objection_handlers.get(OBJECTIONS[intent])
        if not handler:
            handler = "I understand."
        if self.phase is Phase.OPENING:
            self._last_asked = handler
            return AgentReply(handler)
        return self._ask(handler, f"Coming back to my question: {self._last_asked}")

    def _refused(self) -> AgentReply:
        self._refusals += 1
        if self._refusals >= 2:
            return self._end(_GOODBYE_NOT_INTERESTED, CallOutcome.NOT_INTERESTED)
        handler = self.context.objection_handlers.get("not_interested") or "I understand."
        self._last_asked = handler
        return AgentReply(handler)

    def _close(self, ack: str, outcome: CallOutcome) -> AgentReply:
        return self._end(f"{ack} {self.context.closing_script}".strip(), outcome)

    def _end(self, text: str, outcome: CallOutcome, reason: EndReason = EndReason.AGENT_COMPLETED) -> AgentReply:
        self.phase = Phase.ENDED
        return AgentReply(text, end_outcome=outcome, end_reason=reason)
