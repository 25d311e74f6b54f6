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


class Recorder:
    """The export's runtime, keeping graph 1's subject probabilities and graph 2's outputs."""

    def __init__(self, runtime) -> None:
        self.runtime, self.encoder_outputs, self.object_outputs, self.object_seconds = runtime, [], [], 0.0

    def encode(self, input_ids, attention_mask):
        hidden, subject_probs = self.runtime.encode(input_ids, attention_mask)
        self.encoder_outputs.append(subject_probs)
        return hidden, subject_probs

    def objects(self, hidden, subjects, thresholds):
        started = time.perf_counter()
        outputs = self.runtime.objects(hidden, subjects, thresholds)
        self.object_seconds += time.perf_counter() - started
        self.object_outputs.append(outputs)
        return outputs


class Replay:
    """A runtime that hands back recorded graph outputs: the decode runs, ONNX Runtime does not."""

    run_cpu_s = 0.0  # ONNX Runtime's time, which the engine process subtracts from its own: none here

    def __init__(self, recorder: Recorder) -> None:
        self.encoder_outputs, self.object_outputs = iter(recorder.encoder_outputs), iter(recorder.object_outputs)

    def encode(self, input_ids, attention_mask):
        return None, next(self.encoder_outputs)

    def objects(self, hidden, subjects, thresholds):
        return next(self.object_outputs)
