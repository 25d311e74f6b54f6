"""Prometheus metrics of one service instance (own registry, so tests can build several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "triplex_requests", "HTTP requests by route and status", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "triplex_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge("triplex_queue_depth", "texts waiting for a batch", registry=registry)
        self.batch_texts = Histogram(
            "triplex_batch_texts", "texts per engine batch", buckets=SIZE_BUCKETS, registry=registry
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
            "time a text waits before its batch runs",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.engine_seconds = Histogram(
            "triplex_engine_seconds", "time the engine spends on a batch", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.dropped = Counter(
            "triplex_dropped_texts", "texts dropped before their batch ran", ["reason"], registry=registry
        )
