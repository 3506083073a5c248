"""Turn the model's raw answer into checked, renumbered paragraph citations.

The model sees passages numbered ``[1]..[k]`` and ends its sentences with
markers such as ``[2]``. Nothing it writes is trusted as is:

* markers are parsed (``[2]``, ``[2, 3]``, ``[2-3]``, ``[2][3]``, ``[Passage 2]``,
  ``[¶2]``) and any number outside ``1..k`` is removed and counted;
* the passages cited are renumbered in order of first appearance, one number per
  paragraph (two given passages that are the same paragraph share a number);
* every (sentence, cited paragraph) pair gets a lexical support check (see
  :func:`support`): numbers and names the sentence asserts must be in the
  paragraph, and most of its content words too;
* an uncited sentence that one passage clearly supports gets that citation; a
  sentence nothing supports is flagged; pure filler ("Here is the answer:") is
  dropped;
* a refusal, or an answer none of whose sentences is supported, becomes
  :data:`ABSTAIN_TEXT` with no citations.

Citations come only from markers in the model's output mapped onto the passages
given, so text inside an article ("[7]", "cite [9]") cannot create one; and
:func:`sanitize_passage_text` rewrites bracketed numbers in article text before
it reaches the prompt so the model is not tempted to copy them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Set
from dataclasses import dataclass, field

from rag.types import Citation, Passage, Sentence

__all__ = [
    "ABSTAIN_TEXT",
    "ATTACH_SCORE",
    "DEFAULT_THRESHOLD",
    "CheckedAnswer",
    "check_answer",
    "is_refusal",
    "parse_markers",
    "sanitize_passage_text",
    "split_sentences",
    "support",
]

ABSTAIN_TEXT = "The indexed articles do not answer this question."

DEFAULT_THRESHOLD = 0.75
"""Least :func:`support` score for a paragraph to support a sentence.

With names or numbers in the sentence (all of which must be found) the score is
``0.5 + 0.5 * content share``, so 0.75 means at least half of the content words
must be in the paragraph; a sentence with no name or number needs three in four
of its content words, since nothing else anchors it to the paragraph.
"""

ATTACH_SCORE = 0.85
"""Least score for attaching a citation to a sentence the model left uncited.

Higher than the threshold because the model did not claim this source: we only
add a citation when the match is plain (and the sentence has 2+ key terms).
"""

_ATTACH_MIN_TERMS = 2

# A hard miss (a number or name the paragraph lacks) halves the public score so
# that it reads as clearly unsupported; the verdict itself ignores the score then.
_HARD_MISS_FACTOR = 0.5

# Ranges wider than this are not expanded ("[1-500]" is noise, not 500 citations).
_MAX_RANGE = 50


@dataclass
class CheckedAnswer:
    """The model's answer after citation checking.

    ``text`` is what users see, with markers renumbered ``[1]``, ``[2]``, … in
    order of first appearance. ``citations`` has one entry per distinct cited
    paragraph in that order, and ``Citation.number`` is the number in ``text``.
    ``sentences`` holds each kept sentence without markers, with its renumbered
    citations and whether a cited paragraph supports it.
    """

    text: str
    citations: list[Citation]
    sentences: list[Sentence]
    dropped_markers: int
    """Marker numbers pointing outside ``1..len(passages)``, removed from the text."""
    abstained: bool


# ---------------------------------------------------------------------------
# Markers

# One reference inside a marker: a number with an optional label the model may
# copy from the prompt ("Passage 2", "¶2", "source 2", "^2").
_LABEL = r"(?:passages?|paragraphs?|paras?|sources?|docs?|documents?|refs?|p|¶|§|#|\^)"
_REF = rf"(?:{_LABEL}\s*)?\d{{1,3}}"
_SEP = r"\s*(?:,|;|&|\band\b|-|–|—)\s*"
# Square brackets with or without a label; parentheses only with a label, since
# "(2)" or "(2019)" in prose is not a citation but "(Passage 2)" is.
_MARKER_RE = re.compile(
    rf"\[\s*{_REF}(?:{_SEP}{_REF})*\s*\]"
    rf"|\(\s*(?:passages?|paragraphs?|paras?|sources?|¶)\s*\d{{1,3}}(?:{_SEP}{_REF})*\s*\)",
    re.IGNORECASE,
)
_LABEL_RE = re.compile(rf"(?<![^\W\d_]){_LABEL}(?=\s*\d)", re.IGNORECASE)
_MARKER_PART_RE = re.compile(r"(\d{1,3})|([-–—])")


def parse_markers(text: str) -> list[tuple[int, int, list[int]]]:
    """Find citation markers in ``text``: ``(start, end, numbers)`` for each.

    Accepts ``[2]``, ``[2, 3]``, ``[2,3]``, ``[2 and 3]``, ranges ``[2-4]`` /
    ``[2–4]`` (expanded to 2, 3, 4) and labelled forms ``[Passage 2]``,
    ``[passage 2]``, ``[¶2]``, and in parentheses only when labelled (``(Passage
    2)``, not ``(2)``). ``[2][3]`` is two adjacent markers. Numbers are
    returned as written (not range-checked); only 1–3 digit numbers count, so a
    bracketed year like ``[2019]`` is not a marker.
    """
    markers: list[tuple[int, int, list[int]]] = []
    for match in _MARKER_RE.finditer(text):
        numbers: list[int] = []
        range_open = False
        for part in _MARKER_PART_RE.finditer(match.group(0)):
            if part.group(2):
                range_open = bool(numbers)
                continue
            value = int(part.group(1))
            if range_open:
                low, high = sorted((numbers[-1], value))
                if high - low <= _MAX_RANGE:
                    numbers[-1:] = range(low, high + 1)
                else:
                    numbers.append(value)
                range_open = False
            else:
                numbers.append(value)
        markers.append((match.start(), match.end(), numbers))
    return markers


def _strip_markers(text: str) -> str:
    return _MARKER_RE.sub(" ", text)


_FOOTNOTE_RE = re.compile(r"\[\^([^\[\]\n]{1,40})\]")


def sanitize_passage_text(text: str) -> str:
    """Neutralise citation-like brackets in article text before it goes into a prompt.

    ``"[7]"`` becomes ``"(7)"``; labelled forms lose the label too (``"[Passage
    2]"`` and ``"(Source 2)"`` → ``"(2)"``, ``"[^3]"`` → ``"(3)"``). A paragraph
    thus cannot show the model a marker to copy, and the result contains nothing
    :func:`parse_markers` would read. Other text is left as it is.
    """

    def neutral(match: re.Match[str]) -> str:
        inner = _LABEL_RE.sub("", match.group(0)[1:-1])
        return "(" + re.sub(r"\s+", " ", inner).strip() + ")"

    text = _FOOTNOTE_RE.sub(lambda m: f"({m.group(1)})", text)
    return _MARKER_RE.sub(neutral, text)


# ---------------------------------------------------------------------------
# Sentences


def _wordset(text: str) -> frozenset[str]:
    """A set of words written as one string (the lists below read better that way)."""
    return frozenset(text.split())


# Abbreviations that never end a sentence in news prose (a title or "No. 5").
_ABBREV_NEVER_FINAL = _wordset(
    "mr mrs ms dr prof st mt ft gen sen rep gov lt col capt sgt rev hon pres supt "
    "vs v cf e.g i.e approx ca fig vol pp"
)
# Abbreviations that may end one (". . . Amazon Inc. The deal"): split only when
# the next word is a capitalised function word that commonly starts a sentence.
_ABBREV_MAYBE_FINAL = _wordset(
    "inc corp co ltd llc plc bros etc jr sr al "
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun "
    "a.m p.m"
)
_SENTENCE_STARTERS = _wordset(
    "a an the it its he she they we i this that these those there his her their in on at "
    "after before but and or so yet however meanwhile also as by for from if since while "
    "when what who which why how according both each some many most several"
)
_DOTTED_ACRONYM_RE = re.compile(r"(?:[A-Za-z]\.){2,}$")
_END_PUNCT_RE = re.compile(r"[.!?…]+[\"'”’)\]]*")
_LEADING_MARKERS_RE = re.compile(rf"(?:\s*{_MARKER_RE.pattern})+", re.IGNORECASE)
_LINE_PREFIX_RE = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*•+]\s+|\d{1,2}[.)]\s+)")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")


def _is_sentence_start(ch: str) -> bool:
    return ch.isupper() or ch.isdigit() or ch in "\"'“‘([*$€£_"


def _boundary_allowed(line: str, punct_start: int, next_text: str) -> bool:
    """Whether a period at ``punct_start`` ends a sentence (abbreviations do not)."""
    if line[punct_start] != ".":
        return True
    before = _WORD_BEFORE_RE.search(line[:punct_start])
    if not before:
        return True
    word = before.group(1).lstrip("\"'“‘(*[").lower()
    next_word = next_text.split(maxsplit=1)[0].strip("\"'“‘(*").lower() if next_text else ""
    if word == "no" and next_word[:1].isdigit():
        return False
    if word in _ABBREV_NEVER_FINAL:
        return False
    dotted = _DOTTED_ACRONYM_RE.match(before.group(1) + ".") is not None
    initial = len(word) == 1 and word.isalpha()
    if dotted or initial or word in _ABBREV_MAYBE_FINAL:
        return next_word in _SENTENCE_STARTERS
    return True


def _split_line(line: str) -> list[tuple[int, int]]:
    """Sentence spans of one line; markers after the final period stay with it."""
    spans: list[tuple[int, int]] = []
    start = 0
    end_of_text = len(line.rstrip())
    for punct in _END_PUNCT_RE.finditer(line):
        if punct.start() < start:
            continue
        stop = punct.end()
        trailing = _LEADING_MARKERS_RE.match(line, stop)
        if trailing:
            stop = trailing.end()
        rest = line[stop:]
        if stop >= end_of_text:
            break
        stripped = rest.lstrip()
        gap = len(rest) - len(stripped)
        if not stripped or not _is_sentence_start(stripped[0]):
            continue
        if gap == 0 and not trailing:
            continue  # "$1.5", "U.S.-based": no space, no sentence break
        if not _boundary_allowed(line, punct.start(), stripped):
            continue
        if line[start:stop].strip():
            spans.append((start, stop))
        start = stop
    if line[start:].strip():
        spans.append((start, len(line)))
    return spans


def _split_prefix(line: str) -> tuple[str, str]:
    """Split a list bullet or heading mark off a line (kept for layout, not checked)."""
    match = _LINE_PREFIX_RE.match(line)
    if not match:
        return "", line
    return match.group(0).strip() + " ", line[match.end() :]


def split_sentences(text: str) -> list[str]:
    """Split an answer into sentences, each still carrying its markers.

    Lines are split separately (list items and headings are their own units,
    without their bullet). A marker after the final period (``"...2019. [1]"``)
    belongs to that sentence. Abbreviations (``Mr.``, ``U.S.``, ``Inc.``),
    initials and decimals (``$1.5 billion``) do not end a sentence.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        _, body = _split_prefix(line)
        sentences.extend(body[a:b].strip() for a, b in _split_line(body))
    return [s for s in sentences if s]


# ---------------------------------------------------------------------------
# Key terms and the support measure

_STOPWORDS = _wordset(
    """
    a about above across after again against all almost along already also although always am
    among an and another any anyone anything are around as at be became because become been
    before being below between both but by can could did do does doing done down during each
    either else enough even ever every few for from further had has have having he her here
    hers herself him himself his how however i if in into is it its itself just least less
    like made make makes many may me might more most much must my myself near neither never
    no nor not now of off often on once one only onto or other others otherwise our ours
    ourselves out over own per perhaps rather same several she should since so some still such
    than that the their theirs them themselves then there these they this those though through
    thus to too toward towards under until up upon us very via was we were what whatever when
    where whether which while who whom whose why will with within without would yet you your
    yours yourself yourselves don't doesn't didn't isn't aren't wasn't weren't won't can't
    cannot couldn't shouldn't wouldn't hasn't haven't hadn't it's that's there's i'm let's
    additionally furthermore moreover meanwhile overall also instead indeed notably namely
    respectively specifically particularly especially including include includes included
    recently currently previously later earlier first second finally lastly thereby therefore
    hence accordingly consequently subsequently besides despite following regarding concerning
    said says say saying told tells reported reportedly reports according stated states noted
    announced announces announcement
    answer answers question questions passage passages article articles context source sources
    document documents text texts excerpt excerpts paragraph paragraphs provided given
    information based here below above sure certainly response reference references citation
    citations note summary mentioned mention mentions see
    inc corp corporation co ltd llc plc
    dollar dollars usd euro euros eur pound pounds gbp yen yes okay ok well
    located situated known called regarded considered saw seen
    """
)
"""Words that assert nothing checkable: function words, discourse glue, reporting
verbs (the paraphrase "said" vs "announced" is not a factual difference), verbs
that only place or label ("is located in", "is known as"), words
about the passages themselves, company-form suffixes and currency words (the
figure carries the claim; "$4 billion" = "4 billion dollars")."""

_META_WORDS = _wordset(
    "answer answers question questions passage passages article articles context source sources "
    "document documents text texts excerpt excerpts paragraph paragraphs provided given "
    "information based according summary response reference references citation citations "
    "here below above"
)

_MONTHS = {
    "january": "jan",
    "february": "feb",
    "march": "mar",
    "april": "apr",
    "june": "jun",
    "july": "jul",
    "august": "aug",
    "september": "sep",
    "sept": "sep",
    "october": "oct",
    "november": "nov",
    "december": "dec",
}

_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL_NUMBERS.split())}
_NUMBER_WORDS |= {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70}
_NUMBER_WORDS |= {"eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12}
# Ordinals a paragraph spells out ("the tenth series") that an answer writes as "10th". Read on
# the paragraph side only: "second" or "first" in a sentence asserts no figure.
_ORDINALS = (
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
)
_ORDINAL_WORDS = {word: value for value, word in enumerate(_ORDINALS.split()) if value}

_SCALES = {
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "mln": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "bln": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "tn": 1e12,
    "t": 1e12,
}

# A figure: optional currency, digits (with thousands commas or decimals), then
# an optional percent or scale ("$1 billion", "$1bn", "10bn", "1,000", "4.5%").
# Single-letter scales only when glued on ("$1B", "10m"), since "5 m" is rare.
_NUMBER_RE = re.compile(
    r"""
    (?<![\w.,])
    [$€£¥]?\s?
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)
    (?:
        (?P<pct>\s?(?:%|percent\b|per\s?cent\b|pct\b))
      | \s?(?P<scale>thousand|million|billion|trillion|mln|bln|mn|bn|tn)\b
      | (?P<short>[kmbt])\b
    )?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_WORD_NUMBER_RE = re.compile(
    r"\b(?P<word>" + "|".join(_NUMBER_WORDS) + r"|a)\s+"
    r"(?:(?P<scale>thousand|million|billion|trillion)\b|(?P<pct>percent\b|per\s?cent\b))",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_DOTTED_RE = re.compile(r"\b(?:[A-Za-z]\.){2,}")
_HYPHEN_RE = re.compile(r"[-‐‑–—/]")


@dataclass(frozen=True)
class _Number:
    value: float
    percent: bool


@dataclass(frozen=True)
class _Terms:
    """What a sentence asserts: figures and names (all required) and content words."""

    numbers: tuple[_Number, ...]
    names: tuple[str, ...]
    """As written (case kept, possessive and dots removed)."""
    content: tuple[str, ...]
    """Lower-case content words, one per stem."""
    spelled: tuple[tuple[str, ...], ...] = ()
    """Runs of two or more consecutive names ("Amazon Web Services"), for acronyms."""
    echoed: tuple[str, ...] = ()
    """Content words that restate the question; not checked when the sentence asserts more."""
    asked_names: frozenset[str] = frozenset()
    """Names (lower case) the question itself uses, as in "Peyton Manning's passer rating"."""

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.names) + len(self.content) + len(self.echoed)


@dataclass
class _Index:
    """A paragraph (plus its title, for names) prepared for repeated lookups."""

    words: set[str]
    stems: set[str]
    numbers: list[_Number]
    name_words: set[str]
    name_stems: set[str]
    raw_tokens: set[str]
    acronyms: set[str]


def _fold_accents(text: str) -> str:
    """ "Yesün Temür" -> "Yesun Temur": models often drop diacritics when they copy a name."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    )


def _normalise(text: str) -> str:
    text = _fold_accents(text).replace("’", "'").replace("‘", "'")
    text = _DOTTED_RE.sub(lambda m: m.group(0).replace(".", ""), text)  # U.S. -> US
    return _HYPHEN_RE.sub(" ", text)


def _norm_word(word: str) -> str:
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    word = word.rstrip("'")
    return _MONTHS.get(word, word)


_SUFFIXES = (
    "ements",
    "ement",
    "ments",
    "ment",
    "ations",
    "ation",
    "ings",
    "ing",
    "ions",
    "ion",
    "ers",
    "er",
    "ies",
    "ied",
    "ed",
    "es",
    "ly",
    "s",
)


# Irregular past forms that suffix stripping cannot bring home: "began" must meet "begin"
# ("stations like WTRF-TV ... to begin airing" supports "WTRF-TV began airing"). Words that
# are common in another sense ("found" a company, "left" side) are not listed.
_IRREGULAR = {
    **dict.fromkeys(("began", "begun"), "begin"),
    **dict.fromkeys(("became",), "become"),
    **dict.fromkeys(("bought",), "buy"),
    **dict.fromkeys(("brought",), "bring"),
    **dict.fromkeys(("built",), "build"),
    **dict.fromkeys(("chose", "chosen"), "choose"),
    **dict.fromkeys(("came",), "come"),
    **dict.fromkeys(("drove", "driven"), "drive"),
    **dict.fromkeys(("fell", "fallen"), "fall"),
    **dict.fromkeys(("fought",), "fight"),
    **dict.fromkeys(("gave", "given"), "give"),
    **dict.fromkeys(("went", "gone"), "go"),
    **dict.fromkeys(("grew", "grown"), "grow"),
    **dict.fromkeys(("held",), "hold"),
    **dict.fromkeys(("kept",), "keep"),
    **dict.fromkeys(("knew", "known"), "know"),
    **dict.fromkeys(("lost",), "lose"),
    **dict.fromkeys(("made",), "make"),
    **dict.fromkeys(("met",), "meet"),
    **dict.fromkeys(("paid",), "pay"),
    **dict.fromkeys(("ran",), "run"),
    **dict.fromkeys(("rose", "risen"), "rise"),
    **dict.fromkeys(("sold",), "sell"),
    **dict.fromkeys(("sent",), "send"),
    **dict.fromkeys(("spent",), "spend"),
    **dict.fromkeys(("spoke", "spoken"), "speak"),
    **dict.fromkeys(("stood",), "stand"),
    **dict.fromkeys(("struck",), "strike"),
    **dict.fromkeys(("taught",), "teach"),
    **dict.fromkeys(("thought",), "think"),
    **dict.fromkeys(("told",), "tell"),
    **dict.fromkeys(("took", "taken"), "take"),
    **dict.fromkeys(("won",), "win"),
    **dict.fromkeys(("wrote", "written"), "write"),
}


def _stem(word: str) -> str:
    """Strip one common suffix so "invested", "investment", "invests" meet at "invest"."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return word


def _stem_match(stem: str, stems: Set[str]) -> bool:
    if stem in stems:
        return True
    # Prefix matching catches derivations the stripper misses ("invest" ~
    # "investor"); five letters keeps "plan" from matching "planet".
    if len(stem) < 5:
        return False
    return any(
        other.startswith(stem) or (len(other) >= 5 and stem.startswith(other)) for other in stems
    )


def _scaled(number: str, scale: str | None) -> float:
    value = float(number.replace(",", ""))
    return value * _SCALES[scale.lower()] if scale else value


def _find_numbers(text: str, *, bare_words: bool) -> tuple[list[_Number], str]:
    """Figures in ``text`` and the text with them blanked out (so "billion" is no word).

    ``bare_words`` also reads lone number words ("three"), which the paragraph
    side uses so that a sentence's "3" is found in "three".
    """
    numbers: list[_Number] = []

    def take(match: re.Match[str]) -> str:
        word = match.group("word").lower()
        base = 1.0 if word == "a" else float(_NUMBER_WORDS[word])
        scale = match.group("scale")
        numbers.append(_Number(_scaled(str(base), scale), bool(match.group("pct"))))
        return " "

    text = _WORD_NUMBER_RE.sub(take, text)

    def take_digits(match: re.Match[str]) -> str:
        scale = match.group("scale") or match.group("short")
        numbers.append(_Number(_scaled(match.group("num"), scale), bool(match.group("pct"))))
        return " "

    text = _NUMBER_RE.sub(take_digits, text)
    if bare_words:
        for word in _WORD_RE.findall(text):
            lowered = word.lower()
            value = _NUMBER_WORDS.get(lowered, _ORDINAL_WORDS.get(lowered))
            if value is not None:
                numbers.append(_Number(float(value), False))
    return numbers, text


def _is_name(token: str) -> bool:
    """Capitalised words are names, including a sentence's first word.

    "Google invested…" must not pass for "Microsoft invested…", so the first word
    counts too unless it is a function word ("The", "However"). "US" is kept
    although "us" is a stopword; other all-caps stopwords are emphasis ("NOT").
    """
    if token[1:] and not token.isupper() and any(c.isupper() for c in token[1:]):
        return True  # OpenAI, iPhone
    if not token[:1].isupper():
        return False
    lowered = _norm_word(token)
    if token == "US":
        return True
    return lowered not in _STOPWORDS and lowered not in _NUMBER_WORDS


# "as passage 2 says": the number names a passage, it is not a claim.
_PASSAGE_REFERENCE_RE = re.compile(
    r"\b(?:passages?|paragraphs?|sources?|articles?|documents?|excerpts?)\s+\d{1,3}"
    r"(?:\s*(?:,|and|&|-|–)\s*\d{1,3})*\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Question:
    """The question's words, so that an answer restating it is not checked on them."""

    stems: frozenset[str]
    lowercase: frozenset[str]
    """Words the question writes in lower case: "Researchers" opening an answer is no name."""

    @classmethod
    def of(cls, question: str) -> _Question:
        tokens = _WORD_RE.findall(_normalise(question))
        words = [_norm_word(t) for t in tokens]
        return cls(
            stems=frozenset(_stem(w) for w in words if w not in _STOPWORDS and len(w) >= 3),
            lowercase=frozenset(_norm_word(t) for t in tokens if t.islower()),
        )


_NO_QUESTION = _Question(frozenset(), frozenset())


def _terms(sentence: str, question: _Question = _NO_QUESTION) -> _Terms:
    """Extract the key terms a sentence asserts (markers are ignored).

    Content words that restate the ``question`` ("Who was the first European to
    visit China?" - "Marco Polo was the first European to visit China") go to
    ``echoed``: the claim is in the rest. A sentence that only restates the
    question keeps them as content, since then they are all it asserts.
    """
    text = _normalise(_strip_markers(sentence))
    text = _PASSAGE_REFERENCE_RE.sub(" ", text)
    found, text = _find_numbers(text, bare_words=False)
    numbers: list[_Number] = []
    for number in found:
        if number not in numbers:
            numbers.append(number)
    names: list[str] = []
    content: list[str] = []
    seen_names: set[str] = set()
    seen_stems: set[str] = set()
    runs: list[tuple[str, ...]] = []
    run: list[str] = []
    for match in _WORD_RE.finditer(text):
        token = match.group(0)
        if token.endswith("'s") or token.endswith("'S"):
            token = token[:-2]
        if not token:
            continue
        lowered = _norm_word(token)
        if _is_name(token) and lowered not in question.lowercase:
            run.append(token)
            if lowered not in seen_names:
                seen_names.add(lowered)
                names.append(token)
            continue
        if len(run) >= 2:
            runs.append(tuple(run))
        run = []
        if lowered in _STOPWORDS or len(lowered) < 3:
            continue
        stem = _stem(lowered)
        if stem not in seen_stems:
            seen_stems.add(stem)
            content.append(lowered)
    if len(run) >= 2:
        runs.append(tuple(run))
    echoed = [w for w in content if _stem_match(_stem(w), question.stems)]
    if echoed and (numbers or names or len(echoed) < len(content)):
        content = [w for w in content if w not in echoed]
    else:
        echoed = []
    asked = frozenset(
        _norm_word(n) for n in names if _stem_match(_stem(_norm_word(n)), question.stems)
    )
    return _Terms(tuple(numbers), tuple(names), tuple(content), tuple(runs), tuple(echoed), asked)


def _acronyms(text: str) -> set[str]:
    """Initials of runs of capitalised words: "Amazon Web Services" -> "aws"."""
    found: set[str] = set()
    run: list[str] = []
    for token in [*_WORD_RE.findall(text), ""]:
        if token[:1].isupper() and _norm_word(token) not in {"of", "and", "the", "for"}:
            run.append(token[0].lower())
            continue
        if token.lower() in {"of", "and", "for", "the"} and run:
            continue  # "Bank of America" -> "ba"; "Federal Bureau of Investigation" -> "fbi"
        for size in range(2, 7):
            for i in range(len(run) - size + 1):
                found.add("".join(run[i : i + size]))
        run = []
    return found


_RELATIVE_YEARS = {"last year": -1, "this year": 0, "next year": 1}


def _relative_years(text: str, published: str | None) -> list[_Number]:
    """Years a news paragraph names relatively ("this year"), resolved by its date.

    A paragraph of an article from September 2023 that says "this year" supports
    an answer sentence that says "in 2023".
    """
    if not published or not published[:4].isdigit():
        return []
    year = int(published[:4])
    lowered = text.lower()
    return [
        _Number(float(year + offset), False)
        for phrase, offset in _RELATIVE_YEARS.items()
        if phrase in lowered
    ]


def _index(paragraph: str, title: str = "", published: str | None = None) -> _Index:
    text = _normalise(paragraph)
    numbers, words_text = _find_numbers(text, bare_words=True)
    numbers = [*numbers, *_relative_years(text, published)]
    tokens = [_norm_word(t) for t in _WORD_RE.findall(words_text)]
    named_text = _normalise(f"{title}\n{paragraph}") if title else text
    name_tokens = [_norm_word(t) for t in _WORD_RE.findall(named_text)]
    return _Index(
        words=set(tokens),
        stems={_stem(t) for t in tokens},
        numbers=numbers,
        name_words=set(name_tokens),
        name_stems={_stem(t) for t in name_tokens},
        raw_tokens=set(_WORD_RE.findall(named_text)),
        acronyms=_acronyms(named_text),
    )


def _number_found(number: _Number, index: _Index) -> bool:
    for other in index.numbers:
        if number.percent and not other.percent:
            continue
        if math.isclose(number.value, other.value, rel_tol=1e-9, abs_tol=1e-9):
            return True
    return False


def _name_found(name: str, index: _Index) -> bool:
    lowered = _norm_word(name)
    if lowered in index.name_words or _stem_match(_stem(lowered), index.name_stems):
        return True
    if name.isupper() and 2 <= len(name) <= 6:
        # An acronym may sit inside a name ("AI" in "OpenAI") or stand for one.
        return lowered in index.acronyms or any(name in token for token in index.raw_tokens)
    return False


def _content_found(word: str, index: _Index) -> bool:
    if word in index.words or _stem_match(_stem(word), index.stems):
        return True
    value = _NUMBER_WORDS.get(word)
    return value is not None and any(n.value == value for n in index.numbers)


@dataclass(frozen=True)
class _Assessment:
    score: float
    """Public score: coverage, halved when a number or name is missing."""
    coverage: float
    hard_miss: bool
    terms: int


def _assess(terms: _Terms, index: _Index) -> _Assessment:
    if terms.count == 0:
        return _Assessment(0.0, 0.0, False, 0)
    hard_total = len(terms.numbers) + len(terms.names)
    numbers_found = sum(_number_found(n, index) for n in terms.numbers)
    # A name spelled out in the answer ("Amazon Web Services") is found when the
    # paragraph uses its acronym ("AWS").
    by_acronym = {
        _norm_word(name)
        for run in terms.spelled
        for i in range(len(run) - 1)
        for j in range(i + 2, len(run) + 1)
        if "".join(name[0] for name in run[i:j]).lower() in index.name_words
        for name in run[i:j]
    }
    found = {_norm_word(n) for n in terms.names if _name_found(n, index)} | by_acronym
    # A paragraph names a person once in full and then by surname ("Manning finished the
    # year..."): a part of a name that the question gave is excused when the rest of that
    # name is found. Names the question did not give are never excused, so "Eli Manning"
    # is still no answer from a paragraph about Peyton.
    found |= {
        word
        for run in terms.spelled
        if any(_norm_word(n) in found for n in run)
        for word in map(_norm_word, run)
        if word in terms.asked_names
    }
    names_found = sum(_norm_word(n) in found for n in terms.names)
    content_found = sum(_content_found(w, index) for w in terms.content)
    hard_share = (numbers_found + names_found) / hard_total if hard_total else None
    content_share = content_found / len(terms.content) if terms.content else None
    if hard_share is not None and content_share is not None:
        coverage = 0.5 * hard_share + 0.5 * content_share
    else:
        coverage = hard_share if hard_share is not None else content_share or 0.0
    hard_miss = numbers_found < len(terms.numbers) or names_found < len(terms.names)
    score = coverage * _HARD_MISS_FACTOR if hard_miss else coverage
    return _Assessment(score, coverage, hard_miss, terms.count)


def _supports(assessment: _Assessment, threshold: float) -> bool:
    return assessment.terms > 0 and not assessment.hard_miss and assessment.score >= threshold


def support(
    sentence: str,
    paragraph: str,
    *,
    title: str = "",
    published: str | None = None,
    question: str = "",
) -> float:
    """Share of the sentence's key terms found in the paragraph, in 0..1.

    Key terms are figures (normalised: "$1 billion" = "$1bn" = "1 billion",
    "1,000" = "1000", "10 percent" = "10%"), names (capitalised words, matched
    case-insensitively with possessives removed; an acronym also matches the
    initials of a name or sits inside one, "AI" in "OpenAI") and content words
    (stopwords removed, light stemming and prefix matching, so "invested" ~
    "investment"). Figures and names together count half, content words half;
    a sentence with only one kind is scored on that kind alone.

    A missing figure or name halves the score: such a sentence never counts as
    supported (see :func:`check_answer`), whatever the threshold. ``title``, when
    given, is searched for names only, since a paragraph often says "the
    company" where its article's title names it. A sentence with no key terms
    scores 0 (it asserts nothing a paragraph could support). ``published`` (the
    article's ISO date) resolves "this year", "last year" and "next year".
    Words the sentence shares with ``question`` are not checked when it asserts
    something besides them (a restated question is not a claim).
    """
    terms = _terms(sentence, _Question.of(question))
    return _assess(terms, _index(paragraph, title, published)).score


# ---------------------------------------------------------------------------
# Refusals and filler

# Refusals that name the passages or the model itself are refusals wherever they
# stand, cited or not. Bare "sources", "documents" and "texts" are left out (news
# says "the documents did not show…"); with "provided" or "given" they are the
# model's. Quoted speech is removed before matching ("I don't know," he said).
_GIVEN = r"(?:provided|given|supplied|above|indexed|available|retrieved)"
_THEIRS = (
    rf"(?:{_GIVEN} (?:passages?|articles?|context|excerpts?|paragraphs?|texts?|documents?|"
    r"sources?|information)|passages?|articles?|context|excerpts?|paragraphs?)"
)
_REFUSAL_STRONG = [
    re.compile(p)
    for p in (
        r"\bi (?:do not|don't|cannot|can't|could not|couldn't|am unable to|am not able to|"
        r"was unable to|was not able to) (?:know|answer|find|determine|tell|say|provide|locate)\b",
        r"\bi (?:do not|don't) have (?:enough |sufficient |any )?(?:information|data|details)\b",
        r"\b(?:cannot|can't|can not|could not|couldn't|is not able to) be answered\b",
        rf"\bnone of the {_THEIRS}",
        rf"\b(?:the|these|those) {_THEIRS}(?: provided| given| above)?,? (?:do not|don't|does "
        r"not|doesn't|did not|didn't|fail to|make no|contain no|provide no|give no|offer no|"
        r"include no|have no)\b",
        r"\b(?:not enough|insufficient|no relevant|no|not sufficient) (?:information|details|data)"
        rf"(?: is| was)?(?: available| provided| given)? (?:(?:in|from|within) the {_THEIRS}|"
        r"to answer)",
        r"\b(?:not|never|nowhere) (?:mentioned|stated|specified|provided|discussed|covered|"
        rf"addressed|described|included|found|given|answered) (?:in|by|within) the {_THEIRS}",
        r"^(?:i don't know|i do not know|unknown|no answer|not (?:mentioned|stated|specified|"
        r"available|known))$",
    )
]
# Wordings that are refusals only when uncited: "The price was not disclosed [2]"
# is a fact from a paragraph, "The price is not mentioned." is a refusal.
_REFUSAL_WEAK = [
    re.compile(p)
    for p in (
        r"\bno (?:information|mention|details?|data)\b",
        r"\bnot (?:mentioned|specified|stated|provided|available|known)\b",
        r"\b(?:cannot|can't|could not|couldn't) be (?:determined|found|confirmed)\b",
        r"\bunable to (?:answer|determine|find)\b",
    )
]
_COURTESY_RE = re.compile(
    r"^(?:i hope (?:this|that) helps|let me know|feel free|please let me know|hope (?:this|that) "
    r"helps|is there anything else|if you (?:have|need)|thanks?\b|thank you)"
)
_FILLER_LEAD_RE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|great|answer|final answer|here(?:'s| is| are)|"
    r"based on|according to|from the|in summary|to summari[sz]e|summary)\b"
)


def _plain(sentence: str) -> str:
    """Lower-case sentence without markers, markdown emphasis or end punctuation."""
    text = _strip_markers(sentence).replace("’", "'").replace("*", "").replace("_", " ")
    text = re.sub(r"\s+", " ", text).strip().lower()
    return text.strip(" .!?:;,\"'“”")


_QUOTE_RE = re.compile(r"\"[^\"]*\"|“[^”]*”")


def _is_strong_refusal(sentence: str) -> bool:
    plain = _plain(_QUOTE_RE.sub(" ", sentence))
    return any(p.search(plain) for p in _REFUSAL_STRONG)


def _is_refusal_sentence(sentence: str) -> bool:
    if _is_strong_refusal(sentence):
        return True
    if parse_markers(sentence):
        return False
    plain = _plain(_QUOTE_RE.sub(" ", sentence))
    return any(p.search(plain) for p in _REFUSAL_WEAK)


def _is_filler(sentence: str) -> bool:
    """Pure preamble or courtesy: nothing checkable, and clearly not content."""
    plain = _plain(sentence)
    if not plain or _COURTESY_RE.match(plain):
        return True
    if _is_refusal_sentence(sentence) or _terms(sentence).count:
        return False
    words = {_norm_word(w) for w in _WORD_RE.findall(plain)}
    stripped = _strip_markers(sentence).strip().rstrip("*_ ")
    return bool(
        words & _META_WORDS or stripped.endswith(":") or _FILLER_LEAD_RE.match(plain) or not words
    )


def is_refusal(text: str) -> bool:
    """Whether the whole answer is the model declining to answer.

    True when some sentence is a refusal ("The passages do not answer…", "I
    don't know", "…cannot be answered from the passages", "There is no
    information…", "…is not mentioned") and no other sentence carries a citation
    marker. A cited answer with one hedging sentence is not a refusal, and a
    cited sentence that merely says something was "not disclosed" is content.
    """
    sentences = [s for s in split_sentences(text) if not _is_filler(s)]
    refusals = [s for s in sentences if _is_refusal_sentence(s)]
    if not refusals:
        return False
    return not any(parse_markers(s) for s in sentences if s not in refusals)


# ---------------------------------------------------------------------------
# Checking an answer

_TIDY_RULES = [
    (re.compile(r"\(\s*(?:see|cf\.?|source:?|sources:?)?\s*[,;]?\s*\)", re.IGNORECASE), ""),
    (re.compile(r"\s+([,.;:!?…)\]])"), r"\1"),
    (re.compile(r"([(\[])\s+"), r"\1"),
    (re.compile(r"[,;](?=\s*[,;:.!?]|\s*$)"), ""),
    (re.compile(r":\s*(?=[.!?])"), ""),
    (re.compile(r"[ \t]{2,}"), " "),
]
_TAIL_RE = re.compile(r"(?P<punct>[.!?…:;]+)(?P<close>[\"'”’)\]*_]*)$")


# "According to passage [1], X" would read "According to passage, X" once the
# marker moves to the end of the sentence, so the phrase goes with it.
_LEAD_IN_RE = re.compile(
    r"(?:\b(?:according to|as (?:stated|noted|mentioned|reported|described|shown) in|as per|per|"
    r"based on|from|in|see)\s+)?(?:the\s+)?(?:provided\s+|given\s+)?"
    r"\b(?:passages?|sources?|articles?|paragraphs?|documents?|excerpts?)\s*"
    rf"(?=(?:\s*{_MARKER_RE.pattern})+\s*(?:[,;:.!?)]|$))",
    re.IGNORECASE,
)


# "The passage from [5] states that X": the attribution says nothing X does not.
_ATTRIBUTION_RE = re.compile(
    r"^(?:the\s+)?(?:provided\s+|given\s+)?(?:passages?|paragraphs?|articles?|sources?)\s*"
    rf"(?:from\s+)?(?:(?:{_MARKER_RE.pattern})\s*)*"
    r"(?:states?|says?|mentions?|notes?|reports?|explains?|indicates?|shows?|suggests?)"
    r"\s+(?:that\s+)?",
    re.IGNORECASE,
)


def _drop_lead_ins(sentence: str) -> str:
    """Remove "according to passage" wording that only introduced a marker."""
    stripped = sentence.lstrip()
    attribution = _ATTRIBUTION_RE.match(stripped)
    if attribution:
        rest = stripped[attribution.end() :]
        return rest[:1].upper() + rest[1:]
    match = _LEAD_IN_RE.search(stripped)
    if not match:
        return sentence
    result = stripped[: match.start()] + stripped[match.end() :]
    if match.start() == 0:
        # The lead-in opened the sentence: capitalise what now opens it.
        rest = _LEADING_MARKERS_RE.match(result)
        cut = rest.end() if rest else 0
        tail = result[cut:].lstrip(" ,;:")
        result = result[:cut] + " " + tail[:1].upper() + tail[1:]
    return result


def _tidy(text: str) -> str:
    """Clean up what removing markers leaves behind ("2019 ." -> "2019.")."""
    text = re.sub(r"\s+", " ", text).strip()
    for pattern, replacement in _TIDY_RULES:
        text = pattern.sub(replacement, text)
    return text.strip().lstrip(",;: ")


_PREAMBLE_RE = re.compile(r"^([^:]{1,80}):[*_]*\s+(?=\S)")


def _strip_preamble(body: str) -> str:
    """Drop a filler lead-in from a sentence: "Here is the answer: Amazon…" -> "Amazon…"."""
    match = _PREAMBLE_RE.match(body)
    if not match or not _is_filler(match.group(0).strip()):
        return body
    rest = body[match.end() :]
    return rest[:1].upper() + rest[1:]


def _render(body: str, numbers: list[int]) -> str:
    """Put markers before the final punctuation: "... in 2019 [1][2]."

    When a closing quote or bracket follows the punctuation the markers go after
    it instead, so a quotation is not broken open.
    """
    if not numbers:
        return body
    markers = "".join(f"[{n}]" for n in numbers)
    tail = _TAIL_RE.search(body)
    if not tail:
        return f"{body} {markers}"
    if tail.group("close").strip("*_"):
        return f"{body} {markers}"
    head = body[: tail.start()].rstrip()
    return f"{head} {markers}{tail.group(0)}"


@dataclass
class _Unit:
    """One sentence of the answer while it is being checked."""

    line: int
    body: str
    keys: list[int]
    """Indexes (0-based) of distinct cited paragraphs, in order of first mention."""
    kind: str
    """``claim`` (checked), ``connective`` (nothing to check) or ``meta`` (a hedge
    about the passages, e.g. "The passages do not give the date")."""
    supported: bool = False
    credited: set[int] = field(default_factory=set)
    """Cited paragraphs that support the sentence (alone, or as a needed part of several)."""
    scores: dict[int, float] = field(default_factory=dict)


_REFERENCES_HEADING_RE = re.compile(
    r"^(?:sources?|references?|citations?|cited passages?|passages? (?:used|cited))\b[^a-z]*$"
)


def _count_out_of_range(text: str, k: int) -> int:
    return sum(1 for _, _, ns in parse_markers(text) for n in ns if not 1 <= n <= k)


def _paragraph_key(passage: Passage) -> tuple[str, int]:
    return (passage.source, passage.paragraph)


def _abstain(dropped: int) -> CheckedAnswer:
    return CheckedAnswer(ABSTAIN_TEXT, [], [], dropped, abstained=True)


def check_answer(
    raw: str,
    passages: list[Passage],
    threshold: float = DEFAULT_THRESHOLD,
    question: str = "",
) -> CheckedAnswer:
    """Check and renumber the citations in the model's raw answer.

    ``passages`` are the passages as numbered in the prompt (``passages[0]`` is
    ``[1]``). Marker numbers outside ``1..len(passages)`` are removed and counted.
    A sentence is supported when one cited paragraph supports it at ``threshold``
    (see :func:`support`), or, when it cites several, when they do together (a
    sentence may combine facts from two paragraphs). An uncited sentence gets the
    best paragraph's citation when that one supports it plainly (score >=
    :data:`ATTACH_SCORE`, 2+ key terms). Sentences without key terms ("Yes.")
    are kept as supported (nothing to check) but do not count as an answer;
    preamble and courtesy filler are dropped, as is any marker on them; a
    sentence hedging about the passages ("The passages do not say when") is kept
    as supported, without citation. The answer abstains when it is a refusal or
    no sentence with key terms is supported. ``question`` (when given) excuses
    the words an answer sentence repeats from it, as in :func:`support`.
    """
    asked = _Question.of(question)
    # Two passages that are the same paragraph collapse onto the first of them.
    first_of: dict[tuple[str, int], int] = {}
    canonical: list[int] = []
    for i, passage in enumerate(passages):
        canonical.append(first_of.setdefault(_paragraph_key(passage), i))

    units: list[_Unit] = []
    prefixes: dict[int, str] = {}
    dropped = 0
    raw_lines = raw.replace("\r\n", "\n").split("\n")
    in_references = False
    for line_no, line in enumerate(raw_lines):
        prefix, body_line = _split_prefix(line)
        prefixes[line_no] = prefix
        # A "Sources:" list the model appends repeats markers, it asserts nothing.
        if _REFERENCES_HEADING_RE.match(_plain(body_line)):
            in_references = True
            dropped += _count_out_of_range(body_line, len(passages))
            continue
        if in_references and (not body_line.strip() or _LEADING_MARKERS_RE.match(body_line)):
            dropped += _count_out_of_range(body_line, len(passages))
            continue
        in_references = False
        heading = prefix.startswith("#")
        for a, b in _split_line(body_line):
            sentence = body_line[a:b]
            keys: list[int] = []
            for _, _, numbers in parse_markers(sentence):
                for number in numbers:
                    if not 1 <= number <= len(passages):
                        dropped += 1
                        continue
                    key = canonical[number - 1]
                    if key not in keys:
                        keys.append(key)
            body = _strip_preamble(_tidy(_strip_markers(_drop_lead_ins(sentence))))
            if not re.search(r"\w", body):
                # A line of bare markers belongs to the sentence before it.
                if units:
                    units[-1].keys.extend(k for k in keys if k not in units[-1].keys)
                continue
            if _is_strong_refusal(sentence):
                units.append(_Unit(line_no, body, [], "meta", supported=True))
                continue
            if _is_filler(sentence):
                continue
            terms = _terms(body, asked)
            # Headings and list intros ("Two investments:") title what follows.
            intro = body.rstrip("*_ ").endswith(":") and not keys and not terms.numbers
            kind = "connective" if terms.count == 0 or intro or heading else "claim"
            units.append(_Unit(line_no, body, keys, kind, supported=kind == "connective"))

    if is_refusal(raw) or not units:
        return _abstain(dropped)

    indexes = {
        i: _index(passages[i].text, passages[i].title, passages[i].published)
        for i in set(canonical)
    }
    for unit in units:
        if unit.kind == "claim":
            _check_unit(unit, indexes, threshold, asked)

    if not any(u.supported for u in units if u.kind == "claim"):
        return _abstain(dropped)
    return _assemble(units, prefixes, raw_lines, passages, dropped)


def _best_supporting(terms: _Terms, indexes: dict[int, _Index], threshold: float) -> int | None:
    """The passage that plainly supports a sentence on its own, if any (ties: the first)."""
    best: tuple[float, int] | None = None
    for key in sorted(indexes):
        result = _assess(terms, indexes[key])
        if result.hard_miss or result.terms < _ATTACH_MIN_TERMS:
            continue
        if result.score >= max(ATTACH_SCORE, threshold) and (
            best is None or result.score > best[0]
        ):
            best = (result.score, key)
    return best[1] if best else None


def _check_unit(
    unit: _Unit, indexes: dict[int, _Index], threshold: float, question: _Question
) -> None:
    """Decide whether the unit's citations support it.

    A sentence without a citation gets the passage that plainly supports it. A
    sentence whose citations do not support it, while another given passage
    plainly does, is re-pointed there: small models often copy the right fact
    and write the wrong number.
    """
    terms = _terms(unit.body, question)
    if not unit.keys:
        best = _best_supporting(terms, indexes, threshold)
        if best is None:
            return
        unit.keys = [best]

    if not _cited_support(unit, terms, indexes, threshold):
        best = _best_supporting(terms, indexes, threshold)
        if best is not None and best not in unit.keys:
            unit.keys = [best]
            _cited_support(unit, terms, indexes, threshold)


def _cited_support(
    unit: _Unit, terms: _Terms, indexes: dict[int, _Index], threshold: float
) -> bool:
    """Whether the unit's own citations support it (alone or together); records credit."""
    results = {key: _assess(terms, indexes[key]) for key in unit.keys}
    unit.scores = {key: result.score for key, result in results.items()}
    alone = {key for key, result in results.items() if _supports(result, threshold)}
    if alone:
        unit.supported = True
        unit.credited = alone
        return True
    if len(unit.keys) < 2:
        return False

    def together(keys: list[int]) -> bool:
        merged = _merge([indexes[k] for k in keys])
        return _supports(_assess(terms, merged), threshold)

    if not together(unit.keys):
        return False
    unit.supported = True
    # Credit the paragraphs the combination needs; if none is individually
    # needed (redundant coverage), credit those that cover a fair share alone.
    needed = {k for k in unit.keys if not together([o for o in unit.keys if o != k])}
    unit.credited = needed or {k for k, r in results.items() if r.coverage >= 0.5}
    return True


def _merge(indexes: list[_Index]) -> _Index:
    merged = _Index(set(), set(), [], set(), set(), set(), set())
    for index in indexes:
        merged.words |= index.words
        merged.stems |= index.stems
        merged.numbers.extend(index.numbers)
        merged.name_words |= index.name_words
        merged.name_stems |= index.name_stems
        merged.raw_tokens |= index.raw_tokens
        merged.acronyms |= index.acronyms
    return merged


def _assemble(
    units: list[_Unit],
    prefixes: dict[int, str],
    raw_lines: list[str],
    passages: list[Passage],
    dropped: int,
) -> CheckedAnswer:
    """Renumber citations in order of first appearance and lay the text out again."""
    number_of: dict[int, int] = {}
    for unit in units:
        for key in unit.keys:
            number_of.setdefault(key, len(number_of) + 1)

    citations = [
        Citation(number=number, passage=passages[key], supported=False, support=0.0)
        for key, number in number_of.items()
    ]
    by_key = dict(zip(number_of, citations, strict=True))
    for unit in units:
        for key in unit.keys:
            citation = by_key[key]
            citation.support = max(citation.support, unit.scores.get(key, 0.0))
            citation.supported = citation.supported or key in unit.credited

    sentences: list[Sentence] = []
    lines: dict[int, list[str]] = {}
    for unit in units:
        numbers = sorted(number_of[k] for k in unit.keys)
        sentences.append(Sentence(text=unit.body, citations=numbers, supported=unit.supported))
        lines.setdefault(unit.line, []).append(_render(unit.body, numbers))

    out: list[str] = []
    last: int | None = None
    for line_no in sorted(lines):
        if last is not None and any(not ln.strip() for ln in raw_lines[last + 1 : line_no]):
            out.append("")  # the raw answer had a paragraph break here
        out.append(prefixes[line_no] + " ".join(lines[line_no]))
        last = line_no
    return CheckedAnswer(
        text="\n".join(out),
        citations=citations,
        sentences=sentences,
        dropped_markers=dropped,
        abstained=False,
    )
