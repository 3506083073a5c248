"""What every generator engine offers: the :class:`ChatModel` interface and its :class:`Generation`.

An engine loads a chat model once and answers chat messages. ``stream`` yields text as the model
writes it, which matters on a CPU where an answer takes a while, and ends with a
:class:`Generation` that carries the whole text, the token counts and the prefill/decode split
that tells where the time went. :mod:`rag.answer` needs nothing else of an engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from rag.models.catalog import END_OF_TURN_TOKENS

T = TypeVar("T")

__all__ = ["END_OF_TURN_TOKENS", "MAX_CONTEXT", "ChatModel", "Generation", "drain"]

# The Qwen2.5 models declare 32k positions, but on a CPU a prompt that long takes minutes to read
# and attention cost grows with it; 8k is already far more than a handful of news paragraphs and
# a question need.
MAX_CONTEXT = 8192


@dataclass
class Generation:
    """One finished reply and what it cost."""

    text: str
    """The reply, exactly the streamed pieces joined (end-of-turn tokens are not included)."""
    prompt_tokens: int
    new_tokens: int
    """Tokens the model produced, counting the end-of-turn token when it stopped on one."""
    prefill_seconds: float
    """From the start to the first new token: reading the prompt."""
    generation_seconds: float
    """From the first new token to the last."""

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Speed of writing, over the tokens after the first (the first comes with the prefill)."""
        if self.generation_seconds <= 0 or self.new_tokens < 2:
            return 0.0
        return (self.new_tokens - 1) / self.generation_seconds


class ChatModel(Protocol):
    """A loaded chat model, as :mod:`rag.answer` uses it; every engine implements it.

    Not safe to call from two threads at once (one model, one set of CPU cores: running two
    replies together would only make both slower).
    """

    name: str
    """The model as it was asked for: a preset, a folder or a ``.gguf`` path."""
    context_length: int
    """Most tokens the prompt and the reply may take together."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary (no special tokens added)."""
        ...

    def stream(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Iterator[str | Generation]:
        """Yield the reply's text pieces as they are written, then one final :class:`Generation`.

        ``temperature == 0`` decodes greedily, so the same messages give the same reply.
        ``stop_penalty`` is subtracted from the end-of-turn logits: small models tend to stop
        after the first fact of a paragraph that states two, while a finished reply, such as a
        refusal, still stops, its end token being near certain. Closing the iterator early
        (``break``) stops the model at its next token. A prompt longer than ``context_length``
        is a ModelError; the reply is cut to the room the context leaves.
        """
        ...

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Generation:
        """The whole reply at once (same as draining :meth:`stream`)."""
        ...


def last_of(stream: Iterable[object], kind: type[T]) -> T:
    """The last item of type ``kind`` in ``stream``, everything before it consumed.

    Engines' streams end with a :class:`Generation` and answer streams with an ``Answer``;
    a caller that wants only the result drains the stream with this.
    """
    final: T | None = None
    for item in stream:
        if isinstance(item, kind):
            final = item
    if final is None:
        raise RuntimeError(f"the stream ended without a {kind.__name__}")
    return final


def drain(stream: Iterator[str | Generation]) -> Generation:
    """The final :class:`Generation` of an engine's ``stream``, its text pieces consumed."""
    return last_of(stream, Generation)
