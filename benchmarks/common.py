"""Helpers shared by the benchmarks: paths, result files, timing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'CPU'}"


def merge_results(name: str, entries: dict) -> None:
    """Merge ``entries`` into benchmarks/results/NAME.json."""
    path = RESULTS / f"{name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(entries)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))


def rate(work: Callable[[], int], repeats: int) -> tuple[float, list[float]]:
    """Median items per second of ``work`` (which returns how many items it did) over ``repeats`` runs."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        items = work()
        rates.append(items / (time.perf_counter() - started))
    return statistics.median(rates), rates
