"""What callees say on sales/booking calls, and the n-gram LM + dictionary built from it.

pocketsphinx's general English LM is far too broad for noisy 8 kHz phone audio; a
small LM over the phrases a callee is actually likely to say makes recognition of
those phrases reliable, while smoothing keeps other word orders over the same
vocabulary possible.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from prompts.caller_intent import OPT_OUT_PHRASES

logger = logging.getLogger(__name__)

_YES_NO = [
    "yes",
    "yeah",
    "yep",
    "yeah sure",
    "sure",
    "okay",
    "ok",
    "of course",
    "absolutely",
    "sounds good",
    "that sounds good",
    "that sounds great",
    "yes that's right",
    "correct",
    "that's correct",
    "right",
    "no",
    "nope",
    "no thanks",
    "no thank you",
    "not really",
    "i don't think so",
    "maybe",
    "i'm not sure",
    "i guess so",
    "hello",
    "hi",
    "hello who is this",
    "speaking",
    "yes speaking",
    "go ahead",
    "sorry can you repeat that",
    "what did you say",
    "i didn't catch that",
    "thank you",
    "thanks",
    "goodbye",
    "bye",
    "okay bye",
    "have a nice day",
]
_OPT_OUT = list(OPT_OUT_PHRASES)
_NOT_INTERESTED = [
    "i'm not interested",
    "no i'm not interested",
    "not interested",
    "we're not interested",
    "i'm not interested thank you",
    "we don't need that",
]
_CALLBACK = [
    "call me back later",
    "can you call me back later",
    "call me back tomorrow",
    "i'm busy right now",
    "i'm driving right now",
    "this is not a good time",
    "now is not a good time",
    "can we talk later",
    "call me next week",
    "i'm in a meeting",
]
_OBJECTIONS = [
    "that's too expensive",
    "it's too expensive",
    "how much does it cost",
    "how much is it",
    "what's the price",
    "is there a discount",
    "we already use another provider",
    "we already have a provider",
    "we're happy with our current provider",
    "we already have something like that",
    "who is this",
    "who are you",
    "what company are you with",
    "how did you get my number",
    "is this a scam",
    "is this a robot",
    "am i talking to a real person",
    "send me an email",
    "can you send me some information",
    "just send me an email",
    "send me the details",
    "what is this about",
    "what are you selling",
    "i need to think about it",
    "let me think about it",
    "i need to talk to my partner",
    "i have to ask my boss",
]
_SCHEDULING = [
    "tuesday at three pm",
    "monday morning",
    "tomorrow at ten",
    "next wednesday afternoon",
    "thursday at two thirty",
    "friday at eleven am",
    "how about monday at nine",
    "tomorrow morning works",
    "tomorrow afternoon",
    "this afternoon",
    "later today",
    "next week",
    "next monday",
    "on friday",
    "any time after four",
    "the day after tomorrow",
    "saturday morning",
    "sunday is fine",
    "at noon",
    "in the evening",
    "around five o'clock",
    "at one o'clock",
    "at twelve thirty",
    "at eight am",
    "at six pm",
    "at seven fifteen",
    "at quarter past three",
    "half past ten",
    "at nine forty five",
    "one two three four five six seven eight nine ten eleven twelve",
    "thirty fifteen forty five o'clock am pm",
    "january february march april may june july august september october november december",
    "first second third fourth fifth tenth fifteenth twentieth thirtieth",
]
_ANSWERS = [
    "about ten people",
    "we have twenty employees",
    "around fifty employees",
    "just me",
    "it's just the two of us",
    "we have about a hundred staff",
    "our budget is around five hundred dollars a month",
    "about a thousand dollars",
    "i'm the owner",
    "i make the decisions",
    "i'm the manager",
    "you need to talk to my boss",
    "within the next month",
    "as soon as possible",
    "in a few weeks",
    "not right now",
    "maybe next year",
    "right away",
    "we're a small business",
    "my name is john",
    "my email is john at gmail dot com",
    "you can reach me at this number",
]
_CONFIRMATIONS = [
    "that works for me",
    "that works",
    "yes please book it",
    "book it",
    "yes i confirm the order",
    "i confirm",
    "yes that's fine",
    "perfect",
    "great thank you",
    "yes please",
    "let's do it",
    "sign me up",
    "go ahead and book it",
    "can we do a different time",
    "that doesn't work for me",
    "can we change the time",
]

CALLER_PHRASES: list[str] = [
    *_YES_NO,
    *_OPT_OUT,
    *_NOT_INTERESTED,
    *_CALLBACK,
    *_OBJECTIONS,
    *_SCHEDULING,
    *_ANSWERS,
    *_CONFIRMATIONS,
]

BOS, EOS = "<s>", "</s>"
# Absolute discount per seen n-gram: big enough that unseen word orders stay
# reachable, small enough that the corpus phrases dominate.
_DISCOUNT = 0.3
# Pseudo-count added to every unigram so any vocabulary word can start or end a turn.
_UNIGRAM_FLOOR = 0.5

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SYMBOLS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "$": " dollars "}


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return _number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + _number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))  # read long numbers digit by digit


def normalize(text: str) -> list[str]:
    """Lowercase words as a recogniser would output them (digits spelled out)."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"\$\s?(\d[\d,]*)", r"\1 dollars", text)  # $500 -> 500 dollars
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"(\d)([a-z])", r"\1 \2", text)  # 3pm -> 3 pm
    text = re.sub(r"\d+", lambda m: " " + _number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    words = [w.strip("'") for w in text.split() if w.strip("'")]
    return ["okay" if w == "ok" else w for w in words]  # one spelling, one LM entry


def vocabulary_for_context(extra_texts: list[str]) -> list[str]:
    """Caller phrases plus call-specific texts (product name, offer, questions)."""
    return [*CALLER_PHRASES, *(t for t in extra_texts if t and t.strip())]


def _load_cmudict() -> dict[str, list[str]]:
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    prons: dict[str, list[str]] = defaultdict(list)
    with path.open(encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.strip().partition(" ")
            if phones:
                prons[re.sub(r"\(\d+\)$", "", head)].append(phones.strip())
    return prons


def _fallback_pronunciation(word: str, prons: dict[str, list[str]]) -> str | None:
    """Guess a pronunciation for a product-ish word missing from CMUdict.

    Compounds ("solarmax") are glued from dictionary words; short unknowns ("hvac")
    are spelled out letter by letter, as people say acronyms.
    """
    best: list[list[str] | None] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - 20), end - 2):  # parts of >= 3 letters
            prev = best[start]
            part = word[start:end]
            if prev is not None and part in prons:
                cand = [*prev, part]
                if best[end] is None or len(cand) < len(best[end]):  # type: ignore[arg-type]
                    best[end] = cand
    parts = best[len(word)]
    if parts and len(parts) <= 3:
        return " ".join(prons[p][0] for p in parts)
    if len(word) <= 4 and word.isalpha():
        # Letter names, not the article: "a" must be EY, not AH.
        return " ".join("EY" if ch == "a" else prons[ch][0] for ch in word if ch in prons)
    return None


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else -99.0


def _write_arpa(sentences: list[list[str]], vocab: list[str], path: Path) -> None:
    """Trigram ARPA with absolute discounting and back-off to a floored unigram."""
    uni: Counter[str] = Counter()
    bi: dict[str, Counter[str]] = defaultdict(Counter)
    tri: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for words in sentences:
        seq = [BOS, *words, EOS]
        uni.update(seq[1:])
        for a, b in itertools.pairwise(seq):
            bi[a][b] += 1
        for a, b, c in zip(seq, seq[1:], seq[2:], strict=False):
            tri[(a, b)][c] += 1

    targets = [*vocab, EOS]  # <s> is never predicted
    total = sum(uni[w] for w in targets) + _UNIGRAM_FLOOR * len(targets)
    p1 = {w: (uni[w] + _UNIGRAM_FLOOR) / total for w in targets}

    def discounted(counts: Counter[str]) -> tuple[dict[str, float], float]:
        n = sum(counts.values())
        probs = {w: (c - _DISCOUNT) / n for w, c in counts.items()}
        return probs, _DISCOUNT * len(counts) / n

    p2: dict[str, dict[str, float]] = {}
    bo1: dict[str, float] = {}
    for h, counts in bi.items():
        probs, left = discounted(counts)
        p2[h] = probs
        bo1[h] = left / max(1e-12, 1.0 - sum(p1[w] for w in probs))

    def p_bigram(h: str, w: str) -> float:
        if w in p2.get(h, {}):
            return p2[h][w]
        return bo1.get(h, 1.0) * p1[w]

    p3: dict[tuple[str, str], dict[str, float]] = {}
    bo2: dict[tuple[str, str], float] = {}
    for h2, counts in tri.items():
        probs, left = discounted(counts)
        p3[h2] = probs
        bo2[h2] = left / max(1e-12, 1.0 - sum(p_bigram(h2[1], w) for w in probs))

    n_bi = sum(len(v) for v in p2.values())
    n_tri = sum(len(v) for v in p3.values())
    lines = ["\\data\\", f"ngram 1={len(targets) + 1}", f"ngram 2={n_bi}", f"ngram 3={n_tri}", ""]
    lines.append("\\1-grams:")
    lines.append(f"-99.0000 {BOS} {_log10(bo1.get(BOS, 1.0)):.4f}")
    for w in targets:
        if w == EOS:
            lines.append(f"{_log10(p1[w]):.4f} {w}")
        else:
            lines.append(f"{_log10(p1[w]):.4f} {w} {_log10(bo1.get(w, 1.0)):.4f}")
    lines += ["", "\\2-grams:"]
    for h, probs in sorted(p2.items()):
        for w, p in sorted(probs.items()):
            bo = f" {_log10(bo2[(h, w)]):.4f}" if (h, w) in bo2 else ""
            lines.append(f"{_log10(p):.4f} {h} {w}{bo}")
    lines += ["", "\\3-grams:"]
    for (a, b), probs in sorted(p3.items()):
        for w, p in sorted(probs.items()):
            lines.append(f"{_log10(p):.4f} {a} {b} {w}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def build_language_model(phrases: Iterable[str], out_dir: Path) -> tuple[Path, Path]:
    """Write ``caller.lm`` (ARPA trigram) and ``caller.dict`` into ``out_dir``.

    Words with no CMUdict entry (and no compound/acronym guess) are dropped.
    """
    prons = _load_cmudict()
    chosen: dict[str, list[str]] = {}
    dropped: set[str] = set()
    sentences: list[list[str]] = []
    for phrase in phrases:
        kept: list[str] = []
        for word in normalize(phrase):
            if word not in chosen and word not in dropped:
                if word in prons:
                    chosen[word] = prons[word]
                elif (guess := _fallback_pronunciation(word, prons)) is not None:
                    chosen[word] = [guess]
                else:
                    dropped.add(word)
                    logger.debug("no pronunciation for %r; dropped from the LM", word)
            if word in chosen:
                kept.append(word)
        if kept:
            sentences.append(kept)
    if not chosen:
        raise ValueError("no phrase contains a word with a known pronunciation")

    out_dir.mkdir(parents=True, exist_ok=True)
    lm_path, dict_path = out_dir / "caller.lm", out_dir / "caller.dict"
    vocab = sorted(chosen)
    _write_arpa(sentences, vocab, lm_path)
    dict_lines = []
    for word in vocab:
        for i, phones in enumerate(chosen[word]):
            dict_lines.append(f"{word if i == 0 else f'{word}({i + 1})'} {phones}")
    dict_path.write_text("\n".join(dict_lines) + "\n", encoding="utf-8")
    return lm_path, dict_path
