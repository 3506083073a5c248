"""Citation markers: reading them in the model's answer, neutralising them in article text.

The model sees passages numbered ``[1]..[k]`` and ends its sentences with markers such as
``[2]``; small models also write ``[2, 3]``, ``[2-4]``, ``[2][3]``, ``[Passage 2]`` or ``[¶2]``.
"""

from __future__ import annotations

import re

__all__ = [
    "LEADING_MARKERS_RE",
    "MARKER_RE",
    "count_out_of_range",
    "parse_markers",
    "sanitize_passage_text",
    "strip_markers",
]

# Ranges wider than this are not expanded ("[1-500]" is noise, not 500 citations).
MAX_RANGE = 50

# One reference inside a marker: a number with an optional label the model may
# copy from the prompt ("Passage 2", "¶2", "source 2", "^2").
_LABEL = r"(?:passages?|paragraphs?|paras?|sources?|docs?|documents?|refs?|p|¶|§|#|\^)"
_REF = rf"(?:{_LABEL}\s*)?\d{{1,3}}"
_SEP = r"\s*(?:,|;|&|\band\b|-|–|—)\s*"
# Square brackets with or without a label; parentheses only with a label, since
# "(2)" or "(2019)" in prose is not a citation but "(Passage 2)" is.
MARKER_RE = re.compile(
    rf"\[\s*{_REF}(?:{_SEP}{_REF})*\s*\]"
    rf"|\(\s*(?:passages?|paragraphs?|paras?|sources?|¶)\s*\d{{1,3}}(?:{_SEP}{_REF})*\s*\)",
    re.IGNORECASE,
)
LEADING_MARKERS_RE = re.compile(rf"(?:\s*{MARKER_RE.pattern})+", re.IGNORECASE)
"""One or more markers, possibly spaced, at the start of what it is matched on."""
_LABEL_RE = re.compile(rf"(?<![^\W\d_]){_LABEL}(?=\s*\d)", re.IGNORECASE)
_MARKER_PART_RE = re.compile(r"(\d{1,3})|([-–—])")
_FOOTNOTE_RE = re.compile(r"\[\^([^\[\]\n]{1,40})\]")


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
    for match in MARKER_RE.finditer(text):
        numbers: list[int] = []
        range_open = False
        for part in _MARKER_PART_RE.finditer(match.group(0)):
            if part.group(2):
                range_open = bool(numbers)
                continue
            value = int(part.group(1))
            if range_open:
                low, high = sorted((numbers[-1], value))
                if high - low <= MAX_RANGE:
                    numbers[-1:] = range(low, high + 1)
                else:
                    numbers.append(value)
                range_open = False
            else:
                numbers.append(value)
        markers.append((match.start(), match.end(), numbers))
    return markers


def strip_markers(text: str) -> str:
    """``text`` with each marker replaced by a space."""
    return MARKER_RE.sub(" ", text)


def count_out_of_range(text: str, k: int) -> int:
    """Marker numbers in ``text`` outside ``1..k`` (passages the model was not given)."""
    return sum(1 for _, _, ns in parse_markers(text) for n in ns if not 1 <= n <= k)


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
    return MARKER_RE.sub(neutral, text)
