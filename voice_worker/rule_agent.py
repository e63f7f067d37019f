"""The rule-based agent: walks the generated context without an LLM.

It is the offline default and what takes over when the LLM fails mid-call, so
everything it says comes from the context (opening, questions, objection
handlers, commitment question, closing); only short acknowledgements are its own.
"""

from dataclasses import dataclass
from enum import StrEnum

from models.context import ContextInstance
from models.enums import AgentStyle, CallGoal, CallOutcome, EndReason, Language
from prompts.caller_intent import OBJECTIONS, Intent, classify, mentions_time


@dataclass(frozen=True)
class AgentLines:
    """The agent's own words (everything else comes from the context), in the call's language."""

    acks: tuple[str, ...]
    goodbye_opt_out: str
    goodbye_callback: str
    goodbye_not_interested: str
    reprompt: str
    silence_goodbye: str
    max_duration_goodbye: str
    great: str
    thank_you: str
    wonderful: str
    booked: str
    ask_day_and_time: str
    not_caught: str
    coming_back: str
    understood: str
    handover: str
    offer_callback: str


LINES: dict[Language, AgentLines] = {
    Language.ENGLISH: AgentLines(
        acks=("Thank you.", "Got it.", "Great, thanks.", "Understood."),
        goodbye_opt_out="I'm sorry for the interruption. I've removed your number and you won't be called again. Goodbye.",
        goodbye_callback="No problem at all, we'll call you back at a better time. Goodbye.",
        goodbye_not_interested="Understood, thank you for your time. Have a good day. Goodbye.",
        reprompt="Are you still there?",
        silence_goodbye="It seems I've lost you. We'll try again another time. Goodbye.",
        max_duration_goodbye="I'm sorry, I need to wrap up the call now. Thank you for your time. Goodbye.",
        great="Great.",
        thank_you="Thank you.",
        wonderful="Wonderful.",
        booked="Perfect, I'll book that time for you.",
        ask_day_and_time="Which day and time suits you best?",
        not_caught="Sorry, I didn't quite catch that.",
        coming_back="Coming back to my question:",
        understood="I understand.",
        handover="Of course. I'm connecting you with a colleague now, please hold.",
        offer_callback="I'm sorry, nobody from the team is available to take the call right now. Would you like us to call you back?",
    ),
    Language.HEBREW: AgentLines(
        acks=("תודה.", "הבנתי.", "מצוין, תודה.", "בסדר."),
        goodbye_opt_out="סליחה על ההפרעה. הסרתי את המספר שלך ולא נתקשר אליך שוב. להתראות.",
        goodbye_callback="אין בעיה, נחזור אליך בזמן נוח יותר. להתראות.",
        goodbye_not_interested="הבנתי, תודה על הזמן שלך. יום טוב. להתראות.",
        reprompt="אתה עדיין שם?",
        silence_goodbye="נראה שאיבדתי אותך. ננסה שוב בפעם אחרת. להתראות.",
        max_duration_goodbye="סליחה, אני צריך לסיים את השיחה עכשיו. תודה על הזמן שלך. להתראות.",
        great="מצוין.",
        thank_you="תודה.",
        wonderful="נהדר.",
        booked="מעולה, אני קובע את המועד הזה עבורך.",
        ask_day_and_time="איזה יום ושעה נוחים לך?",
        not_caught="סליחה, לא הבנתי.",
        coming_back="חוזר לשאלה שלי:",
        understood="אני מבין.",
        handover="בטח. אני מעביר אותך עכשיו לנציג, נא להמתין.",
        offer_callback="סליחה, אין כרגע נציג פנוי לשיחה. תרצה שנחזור אליך?",
    ),
}


# The acknowledgements between questions, in the call's style (its tone: the request's style, or
# the one the workspace's strategy names). English only; other languages keep their own.
STYLE_ACKS: dict[AgentStyle, tuple[str, ...]] = {
    AgentStyle.PROFESSIONAL: ("Thank you.", "Understood.", "Very good, thank you.", "Noted, thank you."),
    AgentStyle.FRIENDLY: ("Great, thanks!", "Got it!", "Awesome, thank you!", "Perfect, thanks!"),
    AgentStyle.ASSERTIVE: ("Good.", "Got it.", "Right.", "Noted."),
    AgentStyle.LUXURY: ("Thank you kindly.", "Wonderful, thank you.", "How lovely, thank you.", "I appreciate that."),
    AgentStyle.CONCISE: ("Thanks.", "Got it.", "Noted.", "OK."),
}


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
        self.lines = LINES[context.language]
        self.acks = STYLE_ACKS[context.style] if context.language is Language.ENGLISH else self.lines.acks
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
        return f"{self.lines.reprompt} {self._last_asked}"

    def silence_goodbye(self) -> AgentReply:
        return self._end(self.lines.silence_goodbye, self.provisional_outcome(), EndReason.SILENCE_TIMEOUT)

    def max_duration_goodbye(self) -> AgentReply:
        return self._end(self.lines.max_duration_goodbye, self.provisional_outcome(), EndReason.MAX_DURATION)

    def keypad_opt_out(self) -> AgentReply:
        return self._end(self.lines.goodbye_opt_out, CallOutcome.OPTED_OUT, EndReason.OPT_OUT)

    # --- answering the caller -----------------------------------------------------------
    def reply(self, caller_text: str) -> AgentReply:
        if self.phase is Phase.ENDED:
            return AgentReply("")
        if caller_text.strip():
            self.caller_spoke = True
        self._turns += 1
        intent = classify(caller_text)

        if intent is Intent.OPT_OUT:
            return self._end(self.lines.goodbye_opt_out, CallOutcome.OPTED_OUT, EndReason.OPT_OUT)
        if intent is Intent.CALLBACK or (self._callback_offered and intent is Intent.YES):
            return self._end(self.lines.goodbye_callback, CallOutcome.CALLBACK_REQUESTED)
        self._callback_offered = False
        if intent is Intent.HUMAN:
            return self.human_requested()
        if intent is Intent.NOT_INTERESTED or (intent is Intent.NO and self.phase is not Phase.QUESTIONS):
            return self._refused()
        if intent in OBJECTIONS:
            return self._handle_objection(intent)

        if self.phase is Phase.OPENING:
            if self.context.opening_question:
                # The greeting asked (an inbound call's "what can I help you with?"): this is the answer.
                self.answers[self.context.opening_question] = caller_text.strip()
                return self._ask_next_question(ack=self.lines.thank_you)
            return self._ask_next_question(ack=self.lines.great)
        if self.phase is Phase.QUESTIONS and self._question_index < len(self.context.qualification_questions):
            question = self.context.qualification_questions[self._question_index]
            self.answers[question] = caller_text.strip()
            self._question_index += 1
            return self._ask_next_question(ack=self.acks[self._turns % len(self.acks)])
        return self._commitment_answer(intent, caller_text)

    def human_requested(self) -> AgentReply:
        """The caller asked for a person: hand over when the workspace has someone, else offer a callback."""
        if self.can_transfer:
            return self._end(self.lines.handover, CallOutcome.TRANSFERRED)
        self._callback_offered = True
        self._last_asked = self.lines.offer_callback
        return AgentReply(self.lines.offer_callback)

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
        questions = self.context.qualification_questions
        if questions and all(question in self.answers for question in questions):
            return CallOutcome.QUALIFIED
        if self.context.opening_question and self.answers:
            return CallOutcome.INFO_COLLECTED  # an inbound caller who told us what they need
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
                return self._close(self.lines.booked, CallOutcome.MEETING_BOOKED)
            if intent is Intent.YES and self._unclear_commitments == 0:
                self._unclear_commitments += 1
                return self._ask(self.lines.great, self.lines.ask_day_and_time)
        elif intent is Intent.YES:
            return self._close(self.lines.wonderful, _GOAL_OUTCOME[goal])
        self._unclear_commitments += 1
        if self._unclear_commitments >= 2:
            return self._close(self.lines.thank_you, self.provisional_outcome())
        return self._ask(self.lines.not_caught, self.context.commitment_question or "")

    def _handle_objection(self, intent: Intent) -> AgentReply:
        handler = self.context.objection_handlers.get(OBJECTIONS[intent])
        if not handler:
            handler = self.lines.understood
        if self.phase is Phase.OPENING:
            self._last_asked = handler
            return AgentReply(handler)
        return self._ask(handler, f"{self.lines.coming_back} {self._last_asked}")

    def _refused(self) -> AgentReply:
        self._refusals += 1
        if self._refusals >= 2:
            return self._end(self.lines.goodbye_not_interested, CallOutcome.NOT_INTERESTED)
        handler = self.context.objection_handlers.get("not_interested") or self.lines.understood
        self._last_asked = handler
        return AgentReply(handler)

    def _close(self, ack: str, outcome: CallOutcome) -> AgentReply:
        return self._end(f"{ack} {self.context.closing_script}".strip(), outcome)

    def _end(self, text: str, outcome: CallOutcome, reason: EndReason = EndReason.AGENT_COMPLETED) -> AgentReply:
        self.phase = Phase.ENDED
        return AgentReply(text, end_outcome=outcome, end_reason=reason)
