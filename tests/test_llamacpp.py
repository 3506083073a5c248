"""The llama.cpp engine with the tiny preset: same interface, same prompt, same behaviour.

Every engine test runs on each runtime of the engine: the prebuilt llama.cpp of the xllamacpp
wheel (the default, always installed) and llama-cpp-python (the optional extra, compiled from
source: those runs are skipped when it is not installed). The GGUF checks of
``rag.models.gguf_file`` need no llama.cpp and run on a fake preset made of small chunks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import pytest
from conftest import fake_preset

from rag import models
from rag.generate import Generation, load_generator
from rag.generate.transformers import TransformersGenerator
from rag.models import ModelError, Preset

TINY = "smollm2-135m"
QUESTION = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]

HAS_LLAMA_CPP_PYTHON = importlib.util.find_spec("llama_cpp") is not None
# The backends that run the llama.cpp engine, each test run on both.
RUNTIMES = ["llama.cpp", "llama-cpp-python"]


@pytest.fixture(scope="module", params=RUNTIMES)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "llama-cpp-python" and not HAS_LLAMA_CPP_PYTHON:
        pytest.skip("llama-cpp-python is not installed (pip install -e '.[llama-cpp-python]')")
    return str(request.param)


# --- the joined GGUF that llama.cpp reads ----------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Preset:
    """A preset ``fake`` of three small chunk files, registered in PRESETS."""
    return fake_preset(tmp_path / "chunks", (50_000, 50_000, 777), monkeypatch)


def test_gguf_is_joined_once_and_verified(fake: Preset, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = models.gguf_file("fake", home, progress=False)
    assert path == home / "gguf" / "fake.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake.sha256
    record = json.loads((home / "gguf" / "fake.gguf.json").read_text())
    assert record["sha256"] == fake.sha256
    written = path.stat().st_mtime_ns
    assert models.gguf_file("fake", home, progress=False) == path
    assert path.stat().st_mtime_ns == written  # not joined again
    assert not [p for p in (home / "gguf").iterdir() if p.name.startswith(".")]


def test_damaged_joined_gguf_is_joined_again(fake: Preset, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = models.gguf_file("fake", home, progress=False)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    time.sleep(0.01)
    path.write_bytes(bytes(data))  # same size, new time stamps: hashed, found, rebuilt
    assert models.gguf_file("fake", home, progress=False) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake.sha256


def test_damaged_chunk_names_its_package(fake: Preset, tmp_path: Path) -> None:
    chunk = fake.chunks[1].path
    assert chunk is not None
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fake-part2"):
        models.gguf_file("fake", tmp_path / "home", progress=False)
    assert not (tmp_path / "home" / "gguf" / "fake.gguf").exists()


def test_single_chunk_preset_is_its_own_file(tmp_path: Path) -> None:
    path = models.gguf_file(TINY, tmp_path, progress=False)
    assert path == models.PRESETS[TINY].chunks[0].locate()
    assert not (tmp_path / "gguf").exists()  # nothing copied


def test_a_model_folder_has_no_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"llama\.cpp"):
        models.gguf_file(str(tmp_path), tmp_path, progress=False)


def test_missing_llama_cpp_python_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(ModelError, match=r"rag-news\[llama-cpp-python\]"):
        load_generator(TINY, tmp_path, backend="llama-cpp-python")


def test_another_xllamacpp_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C structs are those of one xllamacpp release: another version is a clear error."""
    import importlib.metadata

    from rag.generate import libllama

    libllama.open_library.cache_clear()
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "2099.1.1" if name == "xllamacpp" else real(name),
    )
    try:
        with pytest.raises(
            ModelError, match=r"pip install xllamacpp==" + libllama.XLLAMACPP_VERSION
        ):
            libllama.open_library()
    finally:
        libllama.open_library.cache_clear()


def test_the_library_lays_its_structs_out_as_bound() -> None:
    """What the library writes for each parameter struct is the size the binding declares."""
    import ctypes
    import platform

    from rag.generate import libllama

    library = libllama.open_library()
    libllama.check_layout(library)  # raises on a mismatch
    if platform.machine() == "x86_64":
        for name, struct in (
            ("llama_context_default_params", libllama.ContextParams),
            ("llama_model_default_params", libllama.ModelParams),
        ):
            written = libllama._bytes_written(getattr(library.dll, name))
            assert ctypes.sizeof(struct) - 8 < written <= ctypes.sizeof(struct), name


# --- the tiny model through llama.cpp --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, backend: str) -> object:
    home = tmp_path_factory.getbasetemp() / "rag-home-tiny"
    return load_generator(TINY, home, backend=backend, progress=False)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> TransformersGenerator:
    """The transformers generator of the same model, to compare prompts and tokens with."""
    return TransformersGenerator(
        TINY, tmp_path_factory.getbasetemp() / "rag-home-tiny", progress=False
    )


def test_same_interface_as_the_transformers_generator(tiny: object) -> None:
    for name in ("name", "context_length", "stop_token_ids", "load_seconds"):
        assert hasattr(tiny, name), name
    for name in ("count_tokens", "chat_prompt", "stream", "generate"):
        assert callable(getattr(tiny, name)), name
    assert tiny.name == TINY  # type: ignore[attr-defined]
    assert tiny.context_length == 8192  # type: ignore[attr-defined]
    assert tiny.load_seconds > 0  # type: ignore[attr-defined]


def test_prompt_and_tokens_match_transformers(
    tiny: object, reference: TransformersGenerator
) -> None:
    prompt = tiny.chat_prompt(QUESTION)  # type: ignore[attr-defined]
    assert prompt == reference.chat_prompt(QUESTION)
    assert tiny.count_tokens(prompt) == reference.count_tokens(prompt)  # type: ignore[attr-defined]
    assert tiny.count_tokens("") == 0  # type: ignore[attr-defined]
    text = "Microsoft invested $10 billion in OpenAI — «ChatGPT»’s maker, in 2023."
    assert tiny.count_tokens(text) == reference.count_tokens(text)  # type: ignore[attr-defined]
    assert sorted(tiny.stop_token_ids) == sorted(reference.stop_token_ids)  # type: ignore[attr-defined]


def test_stream_yields_pieces_then_one_generation(tiny: object) -> None:
    items = list(tiny.stream(QUESTION, max_new_tokens=24))  # type: ignore[attr-defined]
    *pieces, last = items
    assert pieces and all(isinstance(piece, str) and piece for piece in pieces)
    assert isinstance(last, Generation)
    assert "".join(pieces) == last.text
    assert "Paris" in last.text
    assert last.prompt_tokens == tiny.count_tokens(tiny.chat_prompt(QUESTION))  # type: ignore[attr-defined]
    assert 0 < last.new_tokens <= 24
    assert last.new_tokens < 24  # stopped on its end-of-turn token, not shown in the text
    assert "<|im_end|>" not in last.text
    assert last.prefill_seconds > 0 and last.generation_seconds > 0


def test_greedy_is_reproducible_with_and_without_the_cached_prompt(tiny: object) -> None:
    first = tiny.generate(STORY, max_new_tokens=20)  # type: ignore[attr-defined]
    again = tiny.generate(STORY, max_new_tokens=20)  # the prompt is reused from the cache
    tiny.forget()  # type: ignore[attr-defined]
    cold = tiny.generate(STORY, max_new_tokens=20)  # type: ignore[attr-defined]
    assert first.text == again.text == cold.text
    assert first.new_tokens == again.new_tokens == cold.new_tokens == 20


def test_a_prompt_sharing_a_prefix_reads_only_the_rest(tiny: object) -> None:
    tiny.generate(QUESTION, max_new_tokens=4)  # type: ignore[attr-defined]
    llama = tiny.llama  # type: ignore[attr-defined]
    other = [QUESTION[0], {"role": "user", "content": "What is the capital of Italy?"}]
    evaluated: list[int] = []
    original = llama.eval
    llama.eval = lambda tokens: (evaluated.append(len(tokens)), original(tokens))[1]
    try:
        reply = tiny.generate(other, max_new_tokens=12)  # type: ignore[attr-defined]
    finally:
        del llama.eval
    assert evaluated[0] < reply.prompt_tokens // 2  # the system turn was not read again
    assert "Rome" in reply.text


def test_greedy_matches_transformers_on_the_first_tokens(
    tiny: object, reference: TransformersGenerator
) -> None:
    # Different arithmetic (Q4_1 blocks against their bf16 dequantization), so only the start
    # of a reply is expected to agree token for token.
    ours = tiny.generate(QUESTION, max_new_tokens=6)  # type: ignore[attr-defined]
    theirs = reference.generate(QUESTION, max_new_tokens=6)
    assert ours.text.split()[:3] == theirs.text.split()[:3]


def test_stop_penalty_keeps_it_writing(tiny: object) -> None:
    natural = tiny.generate(QUESTION, max_new_tokens=40)  # type: ignore[attr-defined]
    forced = tiny.generate(QUESTION, max_new_tokens=40, stop_penalty=1e9)  # type: ignore[attr-defined]
    assert natural.new_tokens < 40
    assert forced.new_tokens == 40


def test_sampling_runs(tiny: object) -> None:
    generation = tiny.generate(STORY, max_new_tokens=8, temperature=0.8)  # type: ignore[attr-defined]
    assert 0 < generation.new_tokens <= 8


def test_limits(tiny: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        tiny.generate(STORY, max_new_tokens=0)  # type: ignore[attr-defined]
    prompt_tokens = tiny.count_tokens(tiny.chat_prompt(STORY))  # type: ignore[attr-defined]
    monkeypatch.setattr(tiny, "context_length", prompt_tokens + 3)
    assert tiny.generate(STORY, max_new_tokens=50).new_tokens <= 3  # type: ignore[attr-defined]
    monkeypatch.setattr(tiny, "context_length", 16)
    with pytest.raises(ModelError, match="16"):
        tiny.generate(QUESTION, max_new_tokens=4)  # type: ignore[attr-defined]


def test_closing_the_stream_stops_the_model(tiny: object) -> None:
    stream = tiny.stream(STORY, max_new_tokens=400)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for n, _piece in enumerate(stream):
        if n == 2:
            break
    stream.close()
    assert time.perf_counter() - started < 5
    # The half-written reply left in the cache does not leak into the next one.
    assert "Paris" in tiny.generate(QUESTION, max_new_tokens=24).text  # type: ignore[attr-defined]


def test_rag_answers_with_the_llama_cpp_backend(
    tmp_path: Path, sample_article: Path, tmp_path_factory: pytest.TempPathFactory, backend: str
) -> None:
    from rag import RAG
    from rag.generate.llamacpp import LlamaCppGenerator

    home = tmp_path_factory.getbasetemp() / "rag-home-tiny"
    settings = {"model": TINY, "home": home, "backend": backend, "max_new_tokens": 16}
    with RAG(tmp_path / "index", progress=False, **settings) as rag:
        rag.ingest([sample_article])
        assert isinstance(rag.generator, LlamaCppGenerator)
        answer = rag.ask("How much did Microsoft invest in OpenAI?")
    assert answer.model == TINY
    assert answer.passages
    assert answer.timings["prefill"] > 0


# --- the saved shared part of the prompt -----------------------------------------------------

LONG = [
    {
        "role": "system",
        "content": "You answer questions about geography. Answer in one short sentence, name the "
        "city, and do not add anything else. If you do not know, say so plainly. Never guess "
        "a city you are not sure of, and never answer a question that is not about geography.",
    },
    {"role": "user", "content": "What is the capital of Germany?"},
    {"role": "assistant", "content": "The capital of Germany is Berlin."},
    {"role": "user", "content": "What is the capital of France?"},
]


def counting_eval(generator: object) -> list[int]:
    """Record how many tokens each llama.eval call of ``generator`` reads."""
    llama = generator.llama  # type: ignore[attr-defined]
    seen: list[int] = []
    original = type(llama).eval

    def eval_(tokens: list[int]) -> None:
        seen.append(len(tokens))
        original(llama, tokens)

    llama.eval = eval_
    return seen


def test_a_new_process_loads_the_shared_prompt_from_disk(tmp_path: Path, backend: str) -> None:
    home = tmp_path / "home"
    first = load_generator(TINY, home, backend=backend, progress=False)  # type: ignore[arg-type]
    reads = counting_eval(first)
    written = first.generate(LONG, max_new_tokens=12)
    saved = list((home / "prompt-cache").glob("*.kv"))
    assert len(saved) == 1
    assert reads[0] >= 64 and sum(reads[:2]) == written.prompt_tokens  # prefix, then the rest

    second = load_generator(TINY, home, backend=backend, progress=False)  # type: ignore[arg-type]  # a "new process"
    reads = counting_eval(second)
    again = second.generate(LONG, max_new_tokens=12)
    assert reads[0] < written.prompt_tokens // 3  # only the last question was read
    assert again.text == written.text and "Paris" in again.text

    second.prompt_cache = None  # off: the whole prompt is read, and the reply is the same
    second.forget()
    reads.clear()
    assert second.generate(LONG, max_new_tokens=12).text == written.text
    assert reads[0] == written.prompt_tokens


def test_a_damaged_saved_prompt_is_read_again(tmp_path: Path, backend: str) -> None:
    home = tmp_path / "home"
    first = load_generator(TINY, home, backend=backend, progress=False)  # type: ignore[arg-type]
    expected = first.generate(LONG, max_new_tokens=12).text
    (saved,) = (home / "prompt-cache").glob("*.kv")
    whole = saved.stat().st_size
    saved.write_bytes(saved.read_bytes()[: whole // 2])
    second = load_generator(TINY, home, backend=backend, progress=False)  # type: ignore[arg-type]
    assert second.generate(LONG, max_new_tokens=12).text == expected
    assert [f.stat().st_size for f in (home / "prompt-cache").glob("*.kv")] == [whole]
