"""Benchmarks: ``python -m benchmarks [--quick] [--only NAME ...]`` (see BENCHMARKS.md).

Each module here (embed, search, answer, quality) measures one area and returns
flat figures under the keys BENCHMARKS.md documents; the runner prints them as a
table and merges them into ``benchmarks/results/latest.json``. Benchmarks
measure; the test suite never times anything.
"""
