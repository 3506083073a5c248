"""An answer's layout units: its lines, list bullets and heading marks, and their sentences.

The model writes prose, lists and headings. Each line is split on its own; a bullet or heading
mark is split off (kept for layout, not checked), and the rest is cut into sentences by
:mod:`rag.sentences`, with the markers after a sentence's final period kept with it.
"""

from __future__ import annotations

import re

from rag.cite.markers import LEADING_MARKERS_RE
from rag.sentences import sentence_spans

__all__ = ["line_sentence_spans", "split_prefix", "split_sentences"]

_LINE_PREFIX_RE = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*•+]\s+|\d{1,2}[.)]\s+)")


def split_prefix(line: str) -> tuple[str, str]:
    """Split a list bullet or heading mark off a line: ``("- ", rest)``, or ``("", line)``."""
    match = _LINE_PREFIX_RE.match(line)
    if not match:
        return "", line
    return match.group(0).strip() + " ", line[match.end() :]


def line_sentence_spans(body: str) -> list[tuple[int, int]]:
    """Sentence spans of one line (its prefix split off); markers after the period stay."""
    return sentence_spans(body, LEADING_MARKERS_RE)


def split_sentences(text: str) -> list[str]:
    """Split an answer into sentences, each still carrying its markers.

    Lines are split separately (list items and headings are their own units,
    without their bullet). A marker after the final period (``"...2019. [1]"``)
    belongs to that sentence. Abbreviations (``Mr.``, ``U.S.``, ``Inc.``),
    initials and decimals (``$1.5 billion``) do not end a sentence.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        _, body = split_prefix(line)
        sentences.extend(body[a:b] for a, b in line_sentence_spans(body))
    return sentences
