"""Run the benchmarks, print one table, merge the figures into results/latest.json.

python -m benchmarks                  # everything (about an hour on 2 cores)
python -m benchmarks --quick          # small sizes, few repeats: a smoke run
python -m benchmarks --only search    # one area; other figures in latest.json are kept
python -m benchmarks --only quality --model qwen2.5-coder-0.5b   # another generator
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from benchmarks.common import RESULTS, BenchContext, machine

# In the order they run; each is benchmarks/<name>.py with KEYS and run(ctx).
MODULES = ("embed", "search", "retrieval", "answer", "quality", "serve", "scale")


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def any_area_has(key: str) -> bool:
    """Whether some area still reports ``key`` (the name of a figure in latest.json)."""
    return any(key in load(name).KEYS for name in MODULES)


def fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these areas")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-bench"))
    parser.add_argument("--repeats", type=int, default=None, help="runs per timed figure")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--model", help="answer with this preset instead of the default")
    args = parser.parse_args()

    ctx = BenchContext(
        quick=args.quick,
        workdir=args.workdir,
        repeats=args.repeats or (2 if args.quick else 5),
        model=args.model,
    )
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results: dict[str, object] = dict(previous.get("results", {}))
    runs: dict[str, object] = dict(previous.get("runs", {}))
    rows: list[tuple[str, str, object]] = []
    for name in args.only or MODULES:
        module = load(name)
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        figures = module.run(ctx)
        seconds = time.perf_counter() - started
        # An area's figures replace all of its earlier ones (a key it no longer reports goes).
        for stale in [k for k in results if k in module.KEYS or not any_area_has(k)]:
            del results[stale]
        # NaN (a figure that could not be measured) is stored as null: JSON has no NaN.
        results.update(
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}
        )
        runs[name] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "quick": args.quick,
        }
        rows += [(key, module.KEYS.get(key, ""), value) for key, value in figures.items()]

    width = max(len(k) for k, _, _ in rows) if rows else 10
    print()
    for key, about, value in rows:
        print(f"{key:<{width}}  {fmt(value):>12}  {about}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "runs": runs, "results": results}
    args.out.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
    print(f"\nwrote {args.out}")
    if args.out == RESULTS / "latest.json" and DOC.exists():
        update_doc(data)
        print(f"updated the table in {DOC}")


DOC = RESULTS.parents[1] / "BENCHMARKS.md"
BEGIN, END = "<!-- results: written by python -m benchmarks -->", "<!-- /results -->"


def update_doc(data: dict[str, object]) -> None:
    """Rewrite the table between the markers in BENCHMARKS.md from latest.json."""
    about = {key: text for name in MODULES for key, text in load(name).KEYS.items()}
    results = data["results"]
    runs = data["runs"]
    assert isinstance(results, dict) and isinstance(runs, dict)
    lines = [BEGIN, "", "| figure | value | what |", "|---|---:|---|"]
    for name in MODULES:
        for key in load(name).KEYS:
            if key in results:
                lines.append(f"| `{key}` | {fmt(results[key])} | {about.get(key, '')} |")
    lines += [
        "",
        "Runs: "
        + ", ".join(
            f"{name} at {run['at']} ({run['seconds']} s{', quick' if run['quick'] else ''})"
            for name, run in runs.items()
            if isinstance(run, dict)
        )
        + ".",
    ]
    machine_info = data["machine"]
    assert isinstance(machine_info, dict)
    lines += [
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info.items()) + ".",
        "",
        END,
    ]
    text = DOC.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + "\n".join(lines) + text[stop:])


if __name__ == "__main__":
    main()
