"""English stemming: Snowball (PyStemmer), plus the irregular forms it cannot bring home.

One stemmer for the project: the lexical index hands :data:`STEMMER` to bm25s, and the citation
check compares words by :func:`stem`, so that "invested", "investment" and "invests" meet at
"invest" and "began" meets "begin".
"""

from __future__ import annotations

import Stemmer

from rag.wordlists import word_map

__all__ = ["IRREGULAR", "STEMMER", "stem"]

STEMMER = Stemmer.Stemmer("english")
"""Snowball's English (Porter2) stemmer, as bm25s takes it."""

IRREGULAR = word_map("rag", "data/irregular-forms.txt")
"""Irregular forms ("began", "sold") and the base ("begin", "sell") they stem as."""


def stem(word: str) -> str:
    """The Snowball stem of a lower-case ``word``, irregular forms first mapped to their base."""
    return str(STEMMER.stemWord(IRREGULAR.get(word, word)))
