"""What the caller meant, recognized from a transcript by keyword rules.

Kept apart from the agent so the same recognition serves the rule-based agent,
the DTMF handler and the transcript tags.
"""

import re
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    NOT_INTERESTED = "not_interested"
    CALLBACK = "callback"
    PRICE = "price"
    TIMING = "timing"
    COMPETITOR = "competitor"
    TRUST = "trust"
    SEND_INFO = "send_info"
    YES = "yes"
    NO = "no"
    TIME_PROPOSAL = "time_proposal"
    OTHER = "other"


# Objection intents map one to one onto the context's objection_handlers keys.
OBJECTIONS = {
    Intent.PRICE: "price",
    Intent.TIMING: "timing",
    Intent.COMPETITOR: "competitor",
    Intent.TRUST: "trust",
    Intent.SEND_INFO: "send_info",
    Intent.NOT_INTERESTED: "not_interested",
}

# What callers say to opt out. The one list: the rules below match any of these inside what was
# said, and the offline recognizer's language model is built from them (speech_vocabulary.py), so
# every opt-out the classifier knows is also one the recognizer expects to hear.
OPT_OUT_PHRASES: tuple[str, ...] = (
    "stop calling",
    "stop calling me",
    "please stop calling me",
    "do not call",
    "do not call me again",
    "don't call",
    "don't call me again",
    "put me on your do not call list",
    "take me off",
    "take me off your list",
    "please take me off your list",
    "take my number off",
    "remove me",
    "remove my number",
    "please remove my number from your list",
    "off your list",
    "off the list",
    "unsubscribe",
    "never call",
    "stop it",
    "stop this",
    "i don't want any more calls",
)


def _phrase_pattern(phrase: str) -> str:
    # Apostrophes are optional: recognizers and people write "dont" as often as "don't".
    return r"\b" + re.escape(phrase).replace("'", "'?") + r"\b"


# Order matters: the first rule that matches wins, and opting out must beat everything.
_RULES: list[tuple[Intent, tuple[str, ...]]] = [
    (Intent.OPT_OUT, tuple(_phrase_pattern(phrase) for phrase in OPT_OUT_PHRASES)),
    (Intent.NOT_INTERESTED, (r"\bnot interested\b", r"\bno interest\b", r"\bnot for (me|us)\b")),
    (
        Intent.CALLBACK,
        (
            r"\bcall (me )?(back|later)\b",
            r"\bbusy( right)? now\b",
            r"\bnot a good time\b",
            r"\bbad time\b",
            r"\bi'?m (driving|busy)\b",
        ),
    ),
    (
        Intent.PRICE,
        (r"\bexpensive\b", r"\bhow much\b", r"\bcost\b", r"\bprice\b", r"\bafford\b", r"\bbudget is tight\b", r"\bcheaper\b"),
    ),
    (
        Intent.COMPETITOR,
        (r"\balready (use|have|got|work with)\b", r"\banother (provider|company|vendor)\b", r"\bcompetitor\b"),
    ),
    (
        Intent.TRUST,
        (r"\bwho is this\b", r"\bwho are you\b", r"\bhow did you get (my|this) number\b", r"\bscam\b", r"\bis this a robot\b"),
    ),
    (
        Intent.SEND_INFO,
        (
            r"\bsend (me |us )?(an |some |the |more )?(email|information|info|details|something|brochure)\b",
            r"\bemail me\b",
            r"\bin writing\b",
        ),
    ),
    (Intent.TIMING, (r"\bnot (right )?now\b", r"\bmaybe later\b", r"\bnext year\b", r"\bnot the right time\b")),
]

# Hebrew, for the workspaces that speak it (text, and voice where a recognizer hears Hebrew). Hebrew
# glues prefixes (ו, ה, ל) to words, so these match anywhere rather than at word boundaries. Kept
# out of OPT_OUT_PHRASES: the English recognizer's language model is built from that list.
HEBREW_RULES: dict[Intent, tuple[str, ...]] = {
    Intent.OPT_OUT: ("תפסיקו להתקשר", "אל תתקשרו", "הסירו אותי", "הסר אותי", "תורידו אותי", "הסרה מהרשימה"),
    Intent.NOT_INTERESTED: ("לא מעוניין", "לא מעוניינת", "לא רלוונטי"),
    Intent.CALLBACK: ("תחזרו אלי", "תחזור אלי", "תתקשרו מאוחר יותר", "אני עסוק", "אני עסוקה", "לא זמן טוב"),
    Intent.PRICE: ("כמה זה עולה", "יקר", "מחיר"),
    Intent.TRUST: ("מי זה", "מי אתה", "מאיפה יש לכם את המספר"),
}
for _intent, _patterns in _RULES:
    _patterns_he = HEBREW_RULES.get(_intent, ())
    if _patterns_he:
        _RULES[_RULES.index((_intent, _patterns))] = (_intent, _patterns + _patterns_he)

_DAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|today|tonight|next week"
_TIME = (
    rf"\b({_DAYS})\b|\b(\d{{1,2}}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
    r"\s*(o'?clock|a\.?m\.?|p\.?m\.?|thirty|fifteen|forty five)\b|\b(morning|afternoon|evening|noon)\b"
)
_HEBREW_TIME = r"(ראשון|שני|שלישי|רביעי|חמישי|שישי|שבת|מחר|היום|בבוקר|בצהריים|בערב|בשעה \d)"
_YES = (
    r"^(yes|yeah|yep|yup|sure|ok|okay|alright|all right|absolutely|definitely|of course|certainly|correct|right)\b",
    r"\b(sounds good|that works|works for me|go ahead|please do|i confirm|let'?s do it|book it|i'?d like that|why not|i have a minute|i do)\b",
    r"^(כן|בטח|בסדר|אוקיי|מעולה|בשמחה)\b",
)
_NO = (
    r"^(no|nope|nah|not really)\b",
    r"\b(no thanks|no thank you|i don'?t think so|i'?m good|not at the moment)\b",
    r"^(לא|ממש לא)\b",
)


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w' ]+", " ", text.lower())).strip()


def classify(text: str) -> Intent:
    said = normalize(text)
    if not said:
        return Intent.OTHER
    for intent, patterns in _RULES:
        if any(re.search(p, said) for p in patterns):
            return intent
    if re.search(_TIME, said) or re.search(_HEBREW_TIME, said):
        return Intent.TIME_PROPOSAL
    if any(re.search(p, said) for p in _NO):
        return Intent.NO
    if any(re.search(p, said) for p in _YES):
        return Intent.YES
    return Intent.OTHER


def mentions_time(text: str) -> bool:
    said = normalize(text)
    return re.search(_TIME, said) is not None or re.search(_HEBREW_TIME, said) is not None


# Canonical phrasings of what callees say on these calls. The offline recognizer's language
# model is built from them (with the call's own words), so each intent above is heard reliably.
EXPECTED_REPLIES: tuple[str, ...] = (
    "yes sure i have a minute",
    "okay yes i have a minute",
    "yes go ahead",
    "sorry who is this",
    "who is this",
    "how did you get my number",
    "stop calling me",
    "please take me off your list",
    "do not call me again",
    "no thanks i'm not interested",
    "no i'm really not interested",
    "i'm not interested",
    "call me back later",
    "i'm busy right now",
    "that's too expensive",
    "how much does it cost",
    "we already use another provider",
    "can you send me some information",
    "i'm the owner and i make the decisions",
    "we have about twenty employees",
    "as soon as possible",
    "within the next month",
    "our budget is around five hundred dollars a month",
    "tuesday at three pm works for me",
    "monday morning works for me",
    "tomorrow at ten am",
    "yes i confirm the order",
    "yes that sounds good",
    "no thank you",
    # Inbound callers: what they need, their name.
    "my kitchen sink is leaking",
    "my boiler stopped working",
    "i need someone to fix a leak",
    "my name is alex",
    "please call me back",
)
