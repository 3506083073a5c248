"""Keep transformers' own progress bars and chatter out of our output.

The project shows its own progress and status lines; transformers' tqdm bars
(including the one the GGUF reader draws directly) would tear through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own tqdm bars and info chatter; we show our own status line."""
    import functools

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # The GGUF reader that Qwen2 and Llama files go through uses tqdm directly, past the switch
    # above; its bar would tear through our status line.
    legacy: Any = None
    with contextlib.suppress(ImportError):
        import transformers.modeling_gguf_pytorch_utils as legacy
    original = getattr(legacy, "tqdm", None)
    if original is not None:
        legacy.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            legacy.tqdm = original
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
