"""Prometheus metrics, aggregated over every process of the service (front ends and engine process).

prometheus-client's multiprocess mode: each process writes its values to files in one folder
(``PROMETHEUS_MULTIPROC_DIR``) and ``/metrics`` sums them. ``use_folder`` must run before the first
metric is created in a process; the service's entry points call it.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from bisect import bisect_left

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "Tally", "exposition", "mark_process_dead", "use_folder"]


def use_folder() -> str:
    """The folder every process of this service writes its metrics to (a new one unless inherited)."""
    if not os.environ.get(FOLDER_VARIABLE):
        os.environ[FOLDER_VARIABLE] = tempfile.mkdtemp(prefix="triplex-metrics-")
    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported before
    return os.environ[FOLDER_VARIABLE]


def exposition() -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=use_folder())
    return generate_latest(registry)


class Metrics:
    def __init__(self) -> None:
        use_folder()
        self.registry = registry = CollectorRegistry()  # not the global one: tests build several apps
        self.requests = Counter(
            "triplex_requests", "HTTP requests by route and status", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "triplex_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge(
            "triplex_queue_depth", "windows waiting for a batch", registry=registry, multiprocess_mode="livesum"
        )
        self.batch_texts = Histogram(
            "triplex_batch_texts", "requests per engine batch", buckets=SIZE_BUCKETS, registry=registry
        )
        self.batch_windows = Histogram(
            "triplex_batch_windows", "windows per engine batch", buckets=SIZE_BUCKETS, registry=registry
        )
        self.batch_tokens = Histogram(
            "triplex_batch_tokens", "padded tokens per engine batch", buckets=TOKEN_BUCKETS, registry=registry
        )
        self.padding_ratio = Histogram(
            "triplex_batch_padding_ratio",
            "share of padded tokens that are padding",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1),
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "triplex_queue_seconds",
            "time a request waits before its first window runs",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.engine_seconds = Histogram(
            "triplex_engine_seconds", "time the engine spends on a batch", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.engine_host_cpu = Counter(
            "triplex_engine_host_cpu_seconds",
            "CPU the engine process spends on its own work (scheduling, padding, decode, messages), ONNX Runtime apart",
            registry=registry,
        )
        self.dropped = Counter(
            "triplex_dropped_requests", "requests dropped before all their windows ran", ["reason"], registry=registry
        )


class Tally:
    """Metric updates kept in plain Python and written out together by ``flush``.

    In multiprocess mode every update is a lock, a process-id check and a write to a memory-mapped file
    (a histogram's observation two of them): a few µs each, and the engine process makes several per
    window. Here an update is a dictionary entry; ``flush`` writes a counter's sum, a gauge's last value
    and a histogram's bucket counts once each. Updates may come from several threads."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.lock = interval, threading.Lock()
        self.sums: dict[Counter, float] = {}
        self.last: dict[Gauge, float] = {}
        self.observed: dict[Histogram, list[float]] = {}
        self.flushed = time.monotonic()

    def inc(self, counter: Counter, amount: float = 1.0) -> None:
        with self.lock:
            self.sums[counter] = self.sums.get(counter, 0.0) + amount

    def set(self, gauge: Gauge, value: float) -> None:
        with self.lock:
            self.last[gauge] = value

    def observe(self, histogram: Histogram, *values: float) -> None:
        with self.lock:
            self.observed.setdefault(histogram, []).extend(values)

    def observe_each(self, observations: dict[Histogram, float]) -> None:
        """One value for each of several histograms, under one taking of the lock."""
        with self.lock:
            for histogram, value in observations.items():
                self.observed.setdefault(histogram, []).append(value)

    @property
    def pending(self) -> bool:
        return bool(self.sums or self.last or self.observed)

    def flush(self, unless_within: float = 0.0) -> None:
        """Write out what was tallied (nothing if the last flush is less than ``unless_within`` s ago)."""
        now = time.monotonic()
        if now - self.flushed < unless_within:
            return
        with self.lock:
            sums, last, observed = self.sums, self.last, self.observed
            self.sums, self.last, self.observed, self.flushed = {}, {}, {}, now
        for counter, amount in sums.items():
            counter.inc(amount)
        for gauge, value in last.items():
            gauge.set(value)
        for histogram, amounts in observed.items():
            observe_all(histogram, amounts)


def observe_all(histogram: Histogram, amounts: list[float]) -> None:
    """``histogram.observe`` for each value, with one write per bucket (prometheus-client keeps a value
    per bucket, counted in the first bucket whose bound is at or above the observation)."""
    bounds, buckets = getattr(histogram, "_upper_bounds", None), getattr(histogram, "_buckets", None)
    if bounds is None or buckets is None or not hasattr(histogram, "_sum"):  # another prometheus-client
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        index = bisect_left(bounds, amount)
        counts[index] = counts.get(index, 0) + 1
    histogram._sum.inc(sum(amounts))
    for index, count in counts.items():
        buckets[index].inc(count)
