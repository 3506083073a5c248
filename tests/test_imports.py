"""Every module of the package imports in a fresh interpreter: alone, and all in either order.

A module that only imports because another one happened to be loaded first, or an import
circle between modules, fails here rather than in a user's first command.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import rag

# Imports each module named on stdin in a child forked from a process that holds no module of
# rag yet, only the third-party libraries rag's import loads (named in argv[1]): each child is a
# fresh interpreter as far as rag is concerned, without paying for numpy and the rest each time.
EACH_ALONE = """
import importlib, json, os, sys, traceback
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
assert not any(m == "rag" or m.startswith("rag.") for m in sys.modules)
failed = {}
for module in json.loads(sys.stdin.read()):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed[module] = error.strip().splitlines()[-1] if error.strip() else f"status {status}"
print(json.dumps(failed))
"""

# The third-party modules a plain `import rag` loads.
THIRD_PARTY = """
import json, sys
import rag
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] != "rag" and "." not in m)))
"""


def all_modules() -> list[str]:
    """Every module and package under rag/, found by walking it (not a list kept by hand)."""
    found = pkgutil.walk_packages(rag.__path__, prefix="rag.", onerror=lambda name: None)
    return sorted(["rag", *(info.name for info in found)])


def run(code: str, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_walk_finds_the_packages() -> None:
    modules = all_modules()
    for name in ("rag.generate.transformers", "rag.models.catalog", "rag.embed.onnx_export"):
        assert name in modules
    assert "rag.parsers" in modules


def test_all_modules_import_in_either_order() -> None:
    modules = all_modules()
    for order in (modules, modules[::-1]):
        run("import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in order))


def test_each_module_imports_alone() -> None:
    third_party = run(THIRD_PARTY).strip()
    failed = json.loads(run(EACH_ALONE, third_party, stdin=json.dumps(all_modules())))
    assert failed == {}
