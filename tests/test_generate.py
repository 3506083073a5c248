"""Generation with the tiny preset: streaming, greedy reproducibility, limits and timings.

The one test with the default 1.5B model is marked slow; it prepares the model into the real RAG
home (``RAG_HOME``, default ``~/.cache/rag``) so the conversion is done once per machine.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from rag import models
from rag.generate import MAX_CONTEXT, Generation, load_generator
from rag.generate.transformers import TransformersGenerator
from rag.models import ModelError

TINY = "smollm2-135m"

QUESTION = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersGenerator:
    # The same folder as test_models.py uses, so the tiny model is converted once per session.
    home = tmp_path_factory.getbasetemp() / "rag-home-tiny"
    return TransformersGenerator(TINY, home, progress=False)


def test_generator_basics(tiny: TransformersGenerator) -> None:
    assert tiny.name == TINY
    assert tiny.context_length == min(8192, MAX_CONTEXT)
    assert tiny.load_seconds > 0
    assert tiny.count_tokens("Hello world") >= 2
    assert tiny.count_tokens("") == 0
    prompt = tiny.chat_prompt(QUESTION)
    assert "What is the capital of France?" in prompt
    assert prompt.rstrip().endswith("assistant")  # ChatML: ready for the reply
    im_end = tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in tiny.stop_token_ids


def test_stream_yields_pieces_then_one_generation(tiny: TransformersGenerator) -> None:
    items = list(tiny.stream(QUESTION, max_new_tokens=24))
    *pieces, last = items
    assert pieces and all(isinstance(piece, str) and piece for piece in pieces)
    assert isinstance(last, Generation)
    assert "".join(pieces) == last.text
    assert "Paris" in last.text
    assert last.prompt_tokens == tiny.count_tokens(tiny.chat_prompt(QUESTION))
    assert 0 < last.new_tokens <= 24
    assert last.prefill_seconds > 0 and last.generation_seconds > 0
    assert last.prefill_tokens_per_second > 0


def test_streamed_text_is_the_decoded_reply(tiny: TransformersGenerator) -> None:
    import torch

    generation = tiny.generate(STORY, max_new_tokens=40)
    encoded = tiny.tokenizer(tiny.chat_prompt(STORY), return_tensors="pt")
    with torch.inference_mode():
        out = tiny.model.generate(
            **encoded, max_new_tokens=40, do_sample=False, eos_token_id=tiny.stop_token_ids
        )
    new = out[0, encoded["input_ids"].shape[1] :]
    assert generation.new_tokens == len(new)
    assert generation.text == tiny.tokenizer.decode(new, skip_special_tokens=True)


def test_greedy_is_reproducible(tiny: TransformersGenerator) -> None:
    first = tiny.generate(STORY, max_new_tokens=20)
    second = tiny.generate(STORY, max_new_tokens=20)
    assert first.text == second.text
    assert first.new_tokens == second.new_tokens


def chat_with_examples(question: str, example: str = "Paris is the capital of France.") -> list:
    """A system message and a worked example (a shared prefix of 64+ tokens), then a question."""
    rules = "You answer in one short sentence, using only facts you are sure of. " * 4
    return [
        {"role": "system", "content": rules},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": example},
        {"role": "user", "content": question},
    ]


def test_the_shared_prompt_prefix_is_read_once(tiny: TransformersGenerator) -> None:
    first = tiny.generate(chat_with_examples("What is the capital of Italy?"), 16)
    kept, prefix = tiny._prefix_kv, list(tiny._prefix_ids)
    assert kept is not None and len(prefix) >= 64
    assert first.prompt_tokens > len(prefix)
    # Another question with the same earlier turns reuses the kept cache, and extends only a
    # copy of it: the kept one still holds the prefix alone.
    tiny.generate(chat_with_examples("What is the capital of Spain?"), 16)
    assert tiny._prefix_kv is kept and kept.get_seq_length() == len(prefix)
    # Greedy replies stay reproducible with the kept cache.
    assert tiny.generate(chat_with_examples("What is the capital of Italy?"), 16).text == first.text
    # Other earlier turns are a new prefix.
    tiny.generate(chat_with_examples("What is the capital of Italy?", "It is Paris."), 16)
    assert tiny._prefix_kv is not kept and tiny._prefix_ids != prefix


def test_a_new_process_loads_the_saved_prefix(
    tiny: TransformersGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    messages = chat_with_examples("What is the capital of Portugal?", "The capital is Paris.")
    first = tiny.generate(messages, 16)
    assert tiny.prompt_cache is not None
    saved = [f for f in tiny.prompt_cache.glob("*.safetensors")]
    assert saved
    # A second generator on the same RAG_HOME stands for a new `rag ask` process.
    second = TransformersGenerator(TINY, tiny.prompt_cache.parent, progress=False)
    with caplog.at_level(logging.DEBUG, logger="rag.generate"):
        again = second.generate(messages, 16)
    assert "loaded from" in caplog.text
    assert again.text == first.text

    # A damaged file is discarded, the prefix read again and saved anew.
    for file in saved:
        file.write_bytes(b"not a cache")
    second._prefix_ids = []
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="rag.generate"):
        assert second.generate(messages, 16).text == first.text
    assert "discarding the saved prompt" in caplog.text
    assert any(f.stat().st_size > 1000 for f in tiny.prompt_cache.glob("*.safetensors"))


def test_a_prefix_that_cannot_be_saved_still_answers(
    tiny: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    def full_disk(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    messages = chat_with_examples("What is the capital of Greece?", "Its capital is Paris.")
    assert tiny.generate(messages, 16).text
    assert tiny._prefix_kv is not None  # kept in memory all the same


def test_sampling_runs(tiny: TransformersGenerator) -> None:
    generation = tiny.generate(STORY, max_new_tokens=8, temperature=0.8)
    assert 0 < generation.new_tokens <= 8


def test_max_new_tokens_is_respected(tiny: TransformersGenerator) -> None:
    generation = tiny.generate(STORY, max_new_tokens=5)
    assert generation.new_tokens == 5  # a story does not end in five tokens
    assert tiny.count_tokens(generation.text) <= 5
    with pytest.raises(ValueError):
        tiny.generate(STORY, max_new_tokens=0)


def test_closing_the_stream_stops_the_model(tiny: TransformersGenerator) -> None:
    stream = tiny.stream(STORY, max_new_tokens=400)
    started = time.perf_counter()
    for n, _piece in enumerate(stream):
        if n == 2:
            break
    stream.close()
    # 400 tokens take well over ten seconds here; stopping takes about one token.
    assert time.perf_counter() - started < 5


def test_prompt_longer_than_context_is_refused(
    tiny: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "context_length", 16)
    with pytest.raises(ModelError, match="16"):
        tiny.generate(QUESTION, max_new_tokens=4)


def test_reply_is_clamped_to_the_context_left(
    tiny: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt_tokens = tiny.count_tokens(tiny.chat_prompt(STORY))
    monkeypatch.setattr(tiny, "context_length", prompt_tokens + 3)
    assert tiny.generate(STORY, max_new_tokens=50).new_tokens <= 3


def test_load_generator_picks_the_backend(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.getbasetemp() / "rag-home-tiny"
    generator = load_generator(TINY, home, backend="transformers", progress=False)
    assert isinstance(generator, TransformersGenerator)
    with pytest.raises(ValueError, match="backend"):
        load_generator(TINY, home, backend="onnx", progress=False)  # type: ignore[arg-type]


@pytest.mark.slow
def test_default_model_answers_from_the_passage() -> None:
    home = Path(os.environ.get("RAG_HOME", "~/.cache/rag")).expanduser()
    generator = TransformersGenerator(models.DEFAULT_MODEL, home, progress=False)
    tokenizer = generator.tokenizer
    for token in ("<|im_end|>", "<|endoftext|>"):
        assert tokenizer.convert_tokens_to_ids(token) in generator.stop_token_ids
    assert generator.context_length == MAX_CONTEXT
    messages = [
        {
            "role": "system",
            "content": "Answer only from the passage. Be brief.",
        },
        {
            "role": "user",
            "content": "Passage: Microsoft said on Monday it would invest $10 billion in OpenAI, "
            "the maker of ChatGPT, in a multiyear deal.\n\n"
            "Question: How much did Microsoft invest in OpenAI?",
        },
    ]
    generation = generator.generate(messages, max_new_tokens=40)
    assert "10 billion" in generation.text
    assert generation.new_tokens < 40  # stopped on its own end-of-turn token
