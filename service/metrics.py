"""Prometheus metrics, aggregated over every process of the service (front ends and engine process).

prometheus-client's multiprocess mode: each process writes its values to files in one folder
(``PROMETHEUS_MULTIPROC_DIR``) and ``/metrics`` sums them. ``use_folder`` must run before the first
metric is created in a process; the service's entry points call it.
"""

from __future__ import annotations

import os
import tempfile

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "exposition", "mark_process_dead", "use_folder"]


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
