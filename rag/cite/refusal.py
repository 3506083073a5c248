"""Refusals and filler: the model declining to answer, and sentences that say nothing.

A refusal ("The passages do not say", "I don't know") turns the whole answer into
:data:`rag.cite.ABSTAIN_TEXT` unless other sentences cite something; preamble ("Here is the
answer:") and courtesy ("I hope this helps!") are dropped. The wordings are regular expressions
in ``rag/cite/data``, one a line.
"""

from __future__ import annotations

import re

from rag.cite.lines import split_sentences
from rag.cite.markers import parse_markers, strip_markers
from rag.cite.terms import META_WORDS, WORD_RE, extract_terms, norm_word
from rag.wordlists import read_entries

__all__ = ["THEIRS", "is_filler", "is_refusal", "is_refusal_sentence", "is_strong_refusal", "plain"]

_GIVEN = r"(?:provided|given|supplied|above|indexed|available|retrieved)"
THEIRS = (
    rf"(?:{_GIVEN} (?:passages?|articles?|context|excerpts?|paragraphs?|texts?|documents?|"
    r"sources?|information)|passages?|articles?|context|excerpts?|paragraphs?)"
)
"""The passages as the model names them ("the provided passages", "the context")."""


def _patterns(name: str) -> list[re.Pattern[str]]:
    return [re.compile(p.replace("{THEIRS}", THEIRS)) for p in read_entries("rag.cite", name)]


def _opening(name: str, whole_word: bool) -> re.Pattern[str]:
    alternatives = "|".join(read_entries("rag.cite", name))
    return re.compile(rf"^(?:{alternatives})" + (r"\b" if whole_word else ""))


_REFUSAL_STRONG = _patterns("data/refusals-anywhere.txt")
_REFUSAL_WEAK = _patterns("data/refusals-uncited.txt")
_COURTESY_RE = _opening("data/courtesy.txt", whole_word=False)
_FILLER_LEAD_RE = _opening("data/filler-leads.txt", whole_word=True)
_QUOTE_RE = re.compile(r"\"[^\"]*\"|“[^”]*”")


def plain(sentence: str) -> str:
    """Lower-case sentence without markers, markdown emphasis or end punctuation."""
    text = strip_markers(sentence).replace("’", "'").replace("*", "").replace("_", " ")
    text = re.sub(r"\s+", " ", text).strip().lower()
    return text.strip(" .!?:;,\"'“”")


def is_strong_refusal(sentence: str) -> bool:
    """A refusal wherever it stands: it names the passages or the model (quotes aside)."""
    text = plain(_QUOTE_RE.sub(" ", sentence))
    return any(p.search(text) for p in _REFUSAL_STRONG)


def is_refusal_sentence(sentence: str) -> bool:
    """A strong refusal, or an uncited sentence saying something is not mentioned or known."""
    if is_strong_refusal(sentence):
        return True
    if parse_markers(sentence):
        return False
    text = plain(_QUOTE_RE.sub(" ", sentence))
    return any(p.search(text) for p in _REFUSAL_WEAK)


def is_filler(sentence: str) -> bool:
    """Pure preamble or courtesy: nothing checkable, and clearly not content."""
    text = plain(sentence)
    if not text or _COURTESY_RE.match(text):
        return True
    if is_refusal_sentence(sentence) or extract_terms(sentence).count:
        return False
    words = {norm_word(w) for w in WORD_RE.findall(text)}
    stripped = strip_markers(sentence).strip().rstrip("*_ ")
    return bool(
        words & META_WORDS or stripped.endswith(":") or _FILLER_LEAD_RE.match(text) or not words
    )


def is_refusal(text: str) -> bool:
    """Whether the whole answer is the model declining to answer.

    True when some sentence is a refusal ("The passages do not answer…", "I
    don't know", "…cannot be answered from the passages", "There is no
    information…", "…is not mentioned") and no other sentence carries a citation
    marker. A cited answer with one hedging sentence is not a refusal, and a
    cited sentence that merely says something was "not disclosed" is content.
    """
    sentences = [s for s in split_sentences(text) if not is_filler(s)]
    refusals = [s for s in sentences if is_refusal_sentence(s)]
    if not refusals:
        return False
    return not any(parse_markers(s) for s in sentences if s not in refusals)
