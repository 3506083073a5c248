"""What a sentence asserts: its figures, its names and its content words.

Both sides of the support check are read here: an answer sentence (:func:`extract_terms`) and,
through the same normalisation, the paragraph it cites (:mod:`rag.cite.scoring`). Figures are
normalised ("$1 billion" = "$1bn" = "1 billion", "10 percent" = "10%"), names are capitalised
words (case-folded, possessives and accents removed), and content words are what remains after
the stopwords, compared by stem.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Set
from dataclasses import dataclass

from rag.cite.markers import strip_markers
from rag.stemming import stem
from rag.wordlists import word_map, word_set

__all__ = [
    "META_WORDS",
    "NUMBER_WORDS",
    "STOPWORDS",
    "WORD_RE",
    "Number",
    "Question",
    "Terms",
    "acronyms",
    "extract_terms",
    "find_numbers",
    "fold_accents",
    "norm_word",
    "normalise",
    "stem_match",
]

_DATA = "rag.cite"

META_WORDS = word_set(_DATA, "data/meta-words.txt")
"""Words about the passages and the answer itself ("passage", "based", "answer")."""

STOPWORDS = META_WORDS | word_set(
    _DATA,
    "data/function-words.txt",
    "data/discourse-words.txt",
    "data/reporting-words.txt",
    "data/labelling-verbs.txt",
    "data/company-suffixes.txt",
    "data/currency-words.txt",
)
"""Words that assert nothing checkable; each list's file says why it is one."""

MONTHS = word_map(_DATA, "data/months.txt")
DATE_WORDS = frozenset(MONTHS) | frozenset(MONTHS.values()) | word_set(_DATA, "data/day-names.txt")
"""Capitalised words that date a sentence rather than name a subject of it (lower case)."""
NUMBER_WORDS = {
    word: int(value) for word, value in word_map(_DATA, "data/number-words.txt").items()
}
ORDINAL_WORDS = {word: int(value) for word, value in word_map(_DATA, "data/ordinals.txt").items()}

SCALES = {
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
    r"\b(?P<word>" + "|".join(NUMBER_WORDS) + r"|a)\s+"
    r"(?:(?P<scale>thousand|million|billion|trillion)\b|(?P<pct>percent\b|per\s?cent\b))",
    re.IGNORECASE,
)
WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_DOTTED_RE = re.compile(r"\b(?:[A-Za-z]\.){2,}")
_HYPHEN_RE = re.compile(r"[-‐‑–—/]")

# "as passage 2 says": the number names a passage, it is not a claim.
_PASSAGE_REFERENCE_RE = re.compile(
    r"\b(?:passages?|paragraphs?|sources?|articles?|documents?|excerpts?)\s+\d{1,3}"
    r"(?:\s*(?:,|and|&|-|–)\s*\d{1,3})*\b",
    re.IGNORECASE,
)

# Stems shorter than this only match exactly: "plan" must not match "planet".
_PREFIX_MATCH_MIN = 5


@dataclass(frozen=True)
class Number:
    value: float
    percent: bool


@dataclass(frozen=True)
class Terms:
    """What a sentence asserts: figures and names (all required) and content words."""

    numbers: tuple[Number, ...]
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
    asked_numbers: tuple[Number, ...] = ()
    """Figures the question itself gives ("in 2004", "the 1500m"): not what the answer adds."""
    question_names: frozenset[str] = frozenset()
    """Every name the question gives (lower case), whether or not the sentence repeats it."""
    question_words: tuple[str, ...] = ()
    """The question's content words: what a bare answer ("£3.7bn.") is about."""
    question_actors: frozenset[str] = frozenset()
    """The question's names that act in it ("did Amazon invest"), not those after a preposition
    ("since the liberation of Auschwitz"): see :func:`acting_names`."""

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.names) + len(self.content) + len(self.echoed)


def fold_accents(text: str) -> str:
    """ "Yesün Temür" -> "Yesun Temur": models often drop diacritics when they copy a name."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    )


def normalise(text: str) -> str:
    """Accents folded, curly apostrophes straightened, "U.S." as "US", hyphens as spaces."""
    text = fold_accents(text).replace("’", "'").replace("‘", "'")
    text = _DOTTED_RE.sub(lambda m: m.group(0).replace(".", ""), text)  # U.S. -> US
    return _HYPHEN_RE.sub(" ", text)


def norm_word(word: str) -> str:
    """Lower case, no possessive, months in their short form."""
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    word = word.rstrip("'")
    return MONTHS.get(word, word)


def stem_match(word_stem: str, stems: Set[str]) -> bool:
    """Whether ``word_stem`` is one of ``stems``, or one is a prefix of the other.

    Prefix matching catches derivations the stemmer keeps apart ("invest" ~ "investor");
    both stems must be long enough (see ``_PREFIX_MATCH_MIN``).
    """
    if word_stem in stems:
        return True
    if len(word_stem) < _PREFIX_MATCH_MIN:
        return False
    return any(
        other.startswith(word_stem)
        or (len(other) >= _PREFIX_MATCH_MIN and word_stem.startswith(other))
        for other in stems
    )


def _scaled(number: str, scale: str | None) -> float:
    value = float(number.replace(",", ""))
    return value * SCALES[scale.lower()] if scale else value


def find_numbers(text: str, *, bare_words: bool) -> tuple[list[Number], str]:
    """Figures in ``text`` and the text with them blanked out (so "billion" is no word).

    ``bare_words`` also reads lone number words ("three") and ordinals ("tenth"), which the
    paragraph side uses so that a sentence's "3" is found in "three".
    """
    numbers: list[Number] = []

    def take(match: re.Match[str]) -> str:
        word = match.group("word").lower()
        base = 1.0 if word == "a" else float(NUMBER_WORDS[word])
        scale = match.group("scale")
        numbers.append(Number(_scaled(str(base), scale), bool(match.group("pct"))))
        return " "

    text = _WORD_NUMBER_RE.sub(take, text)

    def take_digits(match: re.Match[str]) -> str:
        scale = match.group("scale") or match.group("short")
        numbers.append(Number(_scaled(match.group("num"), scale), bool(match.group("pct"))))
        return " "

    text = _NUMBER_RE.sub(take_digits, text)
    if bare_words:
        for word in WORD_RE.findall(text):
            lowered = word.lower()
            value = NUMBER_WORDS.get(lowered, ORDINAL_WORDS.get(lowered))
            if value is not None:
                numbers.append(Number(float(value), False))
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
    lowered = norm_word(token)
    if token == "US":
        return True
    return lowered not in STOPWORDS and lowered not in NUMBER_WORDS


@dataclass(frozen=True)
class Question:
    """The question's words, so that an answer restating it is not checked on them."""

    stems: frozenset[str]
    lowercase: frozenset[str]
    """Words the question writes in lower case: "Researchers" opening an answer is no name."""
    names: frozenset[str] = frozenset()
    """The names the question gives (lower case)."""
    numbers: tuple[Number, ...] = ()
    """The figures the question gives."""
    words: tuple[str, ...] = ()
    """Its content words (lower case, no stopwords)."""
    actors: frozenset[str] = frozenset()
    """Its names that are not right after a preposition (:func:`acting_names`)."""
    text: str = ""

    @classmethod
    def of(cls, question: str) -> Question:
        normalised = normalise(strip_markers(question))
        numbers, rest = find_numbers(normalised, bare_words=False)
        tokens = WORD_RE.findall(rest)
        words = [norm_word(t) for t in tokens]
        return cls(
            stems=frozenset(stem(w) for w in words if w not in STOPWORDS and len(w) >= 3),
            lowercase=frozenset(norm_word(t) for t in tokens if t.islower()),
            names=frozenset(norm_word(t) for t in tokens if _is_name(t)),
            numbers=tuple(dict.fromkeys(numbers)),
            words=tuple(
                dict.fromkeys(
                    w
                    for t, w in zip(tokens, words, strict=True)
                    if not _is_name(t) and w not in STOPWORDS and len(w) >= 3
                )
            ),
            actors=frozenset(acting_names(question)) - _opening_word(tokens),
            text=question,
        )


NO_QUESTION = Question(frozenset(), frozenset())


def _opening_word(tokens: list[str]) -> frozenset[str]:
    """A question's first word when it is capitalised only for opening it ("Roughly how many"):
    no one the question is about. One followed by another name ("Kevin Hogan said") is kept."""
    if len(tokens) >= 2 and _is_name(tokens[0]) and not _is_name(tokens[1]):
        return frozenset({norm_word(tokens[0])})
    return frozenset()


def extract_terms(sentence: str, question: Question = NO_QUESTION) -> Terms:
    """Extract the key terms a sentence asserts (markers are ignored).

    Content words that restate the ``question`` ("Who was the first European to
    visit China?" - "Marco Polo was the first European to visit China") go to
    ``echoed``: the claim is in the rest. A sentence that only restates the
    question keeps them as content, since then they are all it asserts.
    """
    text = normalise(strip_markers(sentence))
    text = _PASSAGE_REFERENCE_RE.sub(" ", text)
    found, text = find_numbers(text, bare_words=False)
    numbers: list[Number] = []
    for number in found:
        if number not in numbers:
            numbers.append(number)
    names: list[str] = []
    content: list[str] = []
    seen_names: set[str] = set()
    seen_stems: set[str] = set()
    runs: list[tuple[str, ...]] = []
    run: list[str] = []
    for match in WORD_RE.finditer(text):
        token = match.group(0)
        if token.endswith("'s") or token.endswith("'S"):
            token = token[:-2]
        if not token:
            continue
        lowered = norm_word(token)
        if _is_name(token) and lowered not in question.lowercase:
            run.append(token)
            if lowered not in seen_names:
                seen_names.add(lowered)
                names.append(token)
            continue
        if len(run) >= 2:
            runs.append(tuple(run))
        run = []
        if lowered in STOPWORDS or len(lowered) < 3:
            continue
        word_stem = stem(lowered)
        if word_stem not in seen_stems:
            seen_stems.add(word_stem)
            content.append(lowered)
    if len(run) >= 2:
        runs.append(tuple(run))
    echoed = [w for w in content if stem_match(stem(w), question.stems)]
    if echoed and (numbers or names or len(echoed) < len(content)):
        content = [w for w in content if w not in echoed]
    else:
        echoed = []
    asked = frozenset(
        norm_word(n)
        for n in names
        if norm_word(n) in question.names or stem_match(stem(norm_word(n)), question.stems)
    )
    given = tuple(n for n in numbers if n in question.numbers)
    return Terms(
        tuple(numbers),
        tuple(names),
        tuple(content),
        tuple(runs),
        tuple(echoed),
        asked,
        given,
        question.names,
        question.words,
        question.actors,
    )


def acronyms(text: str) -> set[str]:
    """Initials of runs of capitalised words: "Amazon Web Services" -> "aws"."""
    found: set[str] = set()
    run: list[str] = []
    for token in [*WORD_RE.findall(text), ""]:
        if token[:1].isupper() and norm_word(token) not in {"of", "and", "the", "for"}:
            run.append(token[0].lower())
            continue
        if token.lower() in {"of", "and", "for", "the"} and run:
            continue  # "Bank of America" -> "ba"; "Federal Bureau of Investigation" -> "fbi"
        for size in range(2, 7):
            for i in range(len(run) - size + 1):
                found.add("".join(run[i : i + size]))
        run = []
    return found


@dataclass(frozen=True)
class NewTerms:
    """What a sentence states that its question does not: the part that can answer it."""

    numbers: tuple[Number, ...]
    names: tuple[str, ...]
    words: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.numbers or self.names or self.words)


# Words after which a name is a place, a source or a side ("at St Andrews", "from Chelsea",
# "for Denmark"), not who did what the sentence says.
_PREPOSITIONS = word_set(_DATA, "data/prepositions.txt")
_WORD_BEFORE_RE = re.compile(r"([^\W_]+)(\W*)$")


def acting_names(text: str) -> set[str]:
    """The names (lower case) of ``text`` that are not right after a preposition: who acts
    ("Microsoft made a $10 billion investment"), not where or from whom. A name owning what
    follows acts wherever it stands ("the value of Mitsubishi's deal" is Mitsubishi's)."""
    normalised = normalise(strip_markers(text))
    found: set[str] = set()
    run: list[str] = []  # the words so far of the name the current word belongs to
    acting = False  # of that name
    last_end = -1
    matches = list(WORD_RE.finditer(normalised))
    for i, match in enumerate(matches):
        token = match.group(0)
        possessive = token.endswith(("'s", "'S"))
        if possessive:
            token = token[:-2]
        if not token or not _is_name(token):
            last_end = -1
            continue
        # The words of a name ("St Andrews") share the place of its first word.
        if last_end < 0 or normalised[last_end : match.start()].strip():
            acting = not _after_preposition(normalised, match.start())
            run = []
        run.append(norm_word(token))
        # "New Year's Eve" is one name; "Mitsubishi's deal" is Mitsubishi's.
        owns = possessive and (i + 1 == len(matches) or not _is_name(matches[i + 1].group(0)))
        if acting or owns:
            found.update(run)
        last_end = match.end()
    return found


# Words that may stand between a preposition and its name: "at 30 West 67th Street", "in the US".
_BETWEEN = frozenset({"the", "a", "an", "its", "their", "his", "her"})


def _after_preposition(text: str, start: int) -> bool:
    end = start
    for _ in range(4):
        before = _WORD_BEFORE_RE.search(text, 0, end)
        if before is None:
            return False
        raw = before.group(1)
        word = raw.lower()
        if word in _PREPOSITIONS:
            return True
        # Figures, articles and the rest of a name ("West 67th Street") lie between.
        if not (any(ch.isdigit() for ch in word) or word in _BETWEEN or raw[:1].isupper()):
            return False
        end = before.start()
    return False


def new_terms(sentence: str, question: str | Question) -> NewTerms:
    """The figures, names and content words of ``sentence`` that ``question`` does not have.

    "The firm will sponsor the festival." says nothing new to "Which firm will sponsor the
    festival?": it restates it, and answers nothing. Number words count as figures
    ("three", "a dozen").
    """
    asked = question if isinstance(question, Question) else Question.of(question)
    terms = extract_terms(sentence, asked)
    words = tuple(w for w in terms.content if not stem_match(stem(w), asked.stems))
    spelled = [
        Number(float(NUMBER_WORDS[w]), False)
        for w in words
        if w in NUMBER_WORDS and w not in ("one",)
    ] + [Number(FRACTION_WORDS[w], False) for w in words if w in FRACTION_WORDS]
    return NewTerms(
        numbers=tuple(n for n in (*terms.numbers, *spelled) if n not in asked.numbers),
        names=tuple(
            n
            for n in terms.names
            if norm_word(n) not in terms.asked_names and not _named_by_adjective(n, asked)
        ),
        words=words,
    )


# Adjectives of a country or people end so ("Swedish", "Japanese", "Italian"); the place they
# name shares their first letters ("Sweden", "Japan", "Italy").
_ADJECTIVE_ENDINGS = ("ish", "ese", "ian", "an", "ic", "i")
_ADJECTIVE_ROOT_MIN = 4


def _named_by_adjective(name: str, question: Question) -> bool:
    """Whether ``name`` is the place an adjective of the question names: "Sweden" says nothing
    new to "In which Swedish town ...?"; it restates the question."""
    lowered = norm_word(name)
    for adjective in question.names:
        if adjective == lowered or not adjective.endswith(_ADJECTIVE_ENDINGS):
            continue
        root = next(
            (i for i, (a, b) in enumerate(zip(adjective, lowered, strict=False)) if a != b),
            min(len(adjective), len(lowered)),
        )
        if root >= _ADJECTIVE_ROOT_MIN and root >= len(adjective) - 4:
            return True
    return False


# Words that state a proportion or a multiple as a figure does ("almost half", "twice").
FRACTION_WORDS = {
    "half": 0.5,
    "third": 1 / 3,
    "thirds": 2 / 3,
    "quarter": 0.25,
    "quarters": 0.75,
    "twice": 2.0,
    "double": 2.0,
    "triple": 3.0,
    "dozens": 24.0,
    "hundreds": 200.0,
    "thousands": 2000.0,
    "millions": 2e6,
    "billions": 2e9,
}


# What a question asks for, by its question word and the noun it asks about: "how many", "what
# was X's winning time" want a figure; "who", "which city" want a name. An answer without one
# does not answer it, however well its words match a paragraph.
_QUANTITIES = "|".join(sorted(word_set(_DATA, "data/quantity-nouns.txt")))
_NAMED = "|".join(sorted(word_set(_DATA, "data/named-nouns.txt")))
# Where a question's question word may stand: at its start, or after a clause that sets the
# scene ("Once Yukos withdrew its threat, which bank remained the target?").
_CLAUSE_START = r"(?:^|[,;:]\s+)\W*"
_ASKS_FIGURE_RE = re.compile(
    r"\bhow (?:much|many|old|long|large|big|far|high|tall)\b|\bby how much\b|"
    # "what price", "at what value", "what final score"
    rf"{_CLAUSE_START}(?:\w+ )?(?:what|which) (?:\w+ )?(?:{_QUANTITIES})\b|"
    # "what was the final score", "what was Brazil's unemployment rate"
    rf"{_CLAUSE_START}(?:\w+ )?what (?:was|is|were|are|had been|will be) "
    rf"(?:the |an? |(?:[A-Z][\w-]* ){{0,3}}[\w-]+'s )(?:\w+ ){{0,2}}(?:{_QUANTITIES})\b",
    re.IGNORECASE,
)
_ASKS_NAME_RE = re.compile(
    rf"{_CLAUSE_START}(?:\w+ )?(?:which|what) (?:\w+ )?(?:{_NAMED})\b", re.IGNORECASE
)


_MONEY_WORDS = word_set(_DATA, "data/money-words.txt")
_CURRENCIES = "|".join(sorted(word_set(_DATA, "data/currency-words.txt")))
_ASKS_AMOUNT_RE = re.compile(
    rf"\bhow much\b"
    rf"|{_CLAUSE_START}(?:\w+ )?(?:what|which) (?:\w+ )?(?:price|value|cost|sum|amount)\b",
    re.I,
)
# A figure in a currency: "$1.2bn", "£40m", "US$5", "3 trillion yen", "1bn roubles", "53p".
_MONEY_RE = re.compile(
    rf"[$€£¥]\s?\d|\d\s?(?:p|c)\b|\d[\d.,]*\s?(?:(?:thousand|million|billion|trillion|m|bn|tn)\s?)?"
    rf"(?:{_CURRENCIES})\b",
    re.IGNORECASE,
)
_SHARE_NOUNS = r"(?:proportion|share|percentage|fraction|per ?cent)"
_ASKS_SHARE_RE = re.compile(
    rf"\bwhat (?:\w+ )?{_SHARE_NOUNS}\b|\bhow many per ?cent\b", re.IGNORECASE
)
# A share: "75%", "40 per cent", "three-quarters", "half", "one in five", "2 out of 3".
_COUNT = r"(?:\d[\d.,]*|a|" + "|".join(NUMBER_WORDS) + ")"
_SHARE_RE = re.compile(
    r"\b(?:half|halves|thirds?|quarters?|fifths?|tenths?|majority|minority)\b"
    rf"|\b{_COUNT} (?:in|out of) (?:every )?{_COUNT}\b",
    re.IGNORECASE,
)


# "What was her winning time", "at what time": a time of day or a time taken.
_ASKS_TIME_RE = re.compile(
    rf"{_CLAUSE_START}(?:\w+ )?what (?:(?:was|is|were|are|had been|will be) )?"
    rf"(?:the |an? |(?:[A-Z][\w-]* ){{0,3}}[\w-]+'s )?(?:\w+ )?time\b",
    re.IGNORECASE,
)
_COUNTED_TIME = r"(?:\d[\d.,]*|" + "|".join(NUMBER_WORDS) + ")"
# A time: "4:14.74", "four minutes 14.74 seconds", "1230 GMT", "3pm", "noon".
_TIME_RE = re.compile(
    r"\b\d{1,2}[:.]\d{2}\b|\b(?:noon|midday|midnight)\b"
    rf"|\b{_COUNTED_TIME}\s?(?:hours?|hrs?|h|minutes?|mins?|m(?=\s?\d)|seconds?|secs?|s\b|"
    r"gmt|bst|utc|am|pm|a\.m\.|p\.m\.)",
    re.IGNORECASE,
)


def asks_time(question: str) -> bool:
    """Whether ``question`` asks for a time ("what was her winning time", "at what time")."""
    return bool(_ASKS_TIME_RE.search(question))


def states_time(sentence: str) -> bool:
    """Whether ``sentence`` gives a time of day or a time taken (not "the 1,000m")."""
    return bool(_TIME_RE.search(normalise(strip_markers(sentence))))


def asks_money(question: str) -> bool:
    """Whether ``question`` asks for an amount of money: "how much did it cost", "at what
    value had the offer put UFJ" (but not "how much data will a disc store")."""
    if not _ASKS_AMOUNT_RE.search(question):
        return False
    return any(norm_word(w) in _MONEY_WORDS for w in WORD_RE.findall(question))


def states_money(sentence: str) -> bool:
    """Whether ``sentence`` gives a figure in a currency."""
    return bool(_MONEY_RE.search(normalise(strip_markers(sentence))))


def asks_share(question: str) -> bool:
    """Whether ``question`` asks for a proportion ("what share", "what percentage")."""
    return bool(_ASKS_SHARE_RE.search(question))


def states_share(sentence: str, numbers: tuple[Number, ...]) -> bool:
    """Whether a sentence whose new figures are ``numbers`` gives a proportion."""
    return any(n.percent for n in numbers) or bool(_SHARE_RE.search(sentence))


def can_answer(sentence: str, question: str | Question, asked: str | None = None) -> bool:
    """Whether ``sentence`` states something that can answer ``asked`` (by default the
    question itself; a part of it otherwise): a figure the question does not give where it
    asks for one (in a currency where it asks for money, a proportion where it asks for a
    share), a new name where it asks for one, else anything new. A sentence that only
    restates the question answers nothing."""
    question = question if isinstance(question, Question) else Question.of(question)
    new = new_terms(sentence, question)
    wanted = question.text if asked is None else asked
    if asks_figure(wanted):
        # A figure of the kind asked for: money where it asks what something cost, a share
        # where it asks what share. "A digital print costs less than a 35mm print" gives a
        # figure, but no price.
        if asks_money(wanted) and not states_money(sentence):
            return False
        if asks_share(wanted) and not states_share(sentence, new.numbers):
            return False
        if asks_time(wanted) and not states_time(sentence):
            return False
        return bool(new.numbers)
    if asks_name(wanted):
        return bool(new.names or new.numbers)
    if asks_who(wanted):
        # "The remaining members of Korn said they hoped Welch finds happiness" names nobody
        # new and says nothing of what "who replaced Welch as Korn's guitarist" asks.
        # Nor does "Hal Luscombe took over from the injured Hal Luscombe": words of what is
        # asked, but all of them the question's own.
        return bool(new.names or new.numbers) or (
            bool(new.words) and _shares_asked_words(sentence, wanted)
        )
    return bool(new)


def _shares_asked_words(sentence: str, asked: str) -> bool:
    """Whether ``sentence`` repeats a content word of ``asked`` that is not a name: says
    something of what it asks ("The city council approved the plan")."""
    stems = frozenset(stem(w) for w in Question.of(asked).words)
    terms = extract_terms(sentence)
    return any(stem_match(stem(w), stems) for w in terms.content)


_GENERIC_MEASURES = word_set(_DATA, "data/generic-measures.txt")
# "How many Holocaust survivors attended": the words between "how many" and its verb.
_COUNTED_RE = re.compile(
    r"\bhow many ((?:[\w'-]+ ){1,4}?)(?:did|do|does|were|are|was|is|have|has|had|will|would|"
    r"can|could|should|might|may)\b",
    re.IGNORECASE,
)


# "How many spectators watched", "what proportion of American teenagers own": where no verb
# like "did" closes what is counted, its first word.
_COUNTED_START_RE = re.compile(
    r"\bhow many ((?:[\w'-]+ ){1,4})"
    rf"|\b{_SHARE_NOUNS} of (?:the |its |their |all )?"
    r"((?:[\w'-]+ ){1,4})",
    re.IGNORECASE,
)


def counted_words(question: str) -> tuple[str, ...]:
    """What a "how many" question counts ("How many Holocaust survivors attended" -> survivors),
    or whom a share is of ("what proportion of American teenagers" -> teenagers), without the
    words that only ask for a figure ("how many people"); empty for other questions."""
    normalised = normalise(question)
    counted = _COUNTED_RE.search(normalised)
    if counted:
        return _counted(counted.group(1))
    start = _COUNTED_START_RE.search(normalised + " ")
    if not start:
        return ()
    return _counted(start.group(1) or start.group(2))[:1]


def _counted(words: str) -> tuple[str, ...]:
    """The content words of ``words`` that say what is counted: no names, figures or words
    that only ask for a figure."""
    found = (norm_word(t) for t in WORD_RE.findall(words) if not _is_name(t))
    skip = (STOPWORDS, NUMBER_WORDS, SCALES, _GENERIC_MEASURES)
    return tuple(
        w for w in found if len(w) >= 3 and not w[0].isdigit() and not any(w in s for s in skip)
    )


def asks_figure(question: str) -> bool:
    """Whether ``question`` asks for a figure (how much, how many, what share, what time...)."""
    return bool(_ASKS_FIGURE_RE.search(question))


_ASKS_WHO_RE = re.compile(rf"{_CLAUSE_START}(?:\w+ )?whom?\b", re.IGNORECASE)


def asks_who(question: str) -> bool:
    """Whether ``question`` asks who did something ("Who replaced Welch?")."""
    return not asks_figure(question) and bool(_ASKS_WHO_RE.search(question))


def asks_name(question: str) -> bool:
    """Whether ``question`` asks for a name: which city, which firm, which film... ("Who" is
    left out: its answer is as often "the city council" as a name.)"""
    return not asks_figure(question) and bool(_ASKS_NAME_RE.search(question))
