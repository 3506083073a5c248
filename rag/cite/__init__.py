"""Turn the model's raw answer into checked, renumbered paragraph citations.

The model sees passages numbered ``[1]..[k]`` and ends its sentences with
markers such as ``[2]``. Nothing it writes is trusted as is:

* markers are parsed (``[2]``, ``[2, 3]``, ``[2-3]``, ``[2][3]``, ``[Passage 2]``,
  ``[¶2]``) and any number outside ``1..k`` is removed and counted
  (:mod:`rag.cite.markers`);
* the answer is cut into lines and sentences (:mod:`rag.cite.lines`, over
  :mod:`rag.sentences`);
* every (sentence, cited paragraph) pair gets a lexical support check
  (:mod:`rag.cite.scoring`, over the terms of :mod:`rag.cite.terms`): numbers and names
  the sentence asserts must be in the paragraph, and most of its content words too;
* an uncited sentence that one passage clearly supports gets that citation; a
  sentence nothing supports is flagged; pure filler ("Here is the answer:") is
  dropped (:mod:`rag.cite.refusal`);
* a refusal, or an answer none of whose sentences is supported, becomes
  :data:`ABSTAIN_TEXT` with no citations (:mod:`rag.cite.check`);
* the passages cited are renumbered in order of first appearance, one number per
  paragraph (two given passages that are the same paragraph share a number), and the
  text is laid out again (:mod:`rag.cite.assemble`).

Citations come only from markers in the model's output mapped onto the passages
given, so text inside an article ("[7]", "cite [9]") cannot create one; and
:func:`sanitize_passage_text` rewrites bracketed numbers in article text before
it reaches the prompt so the model is not tempted to copy them.
"""

from __future__ import annotations

from rag.cite.check import ABSTAIN_TEXT, ATTACH_SCORE, CheckedAnswer, check_answer
from rag.cite.lines import split_sentences
from rag.cite.markers import parse_markers, sanitize_passage_text
from rag.cite.refusal import is_refusal
from rag.cite.scoring import DEFAULT_THRESHOLD, support

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
