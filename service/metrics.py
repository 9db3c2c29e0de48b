"""Prometheus metrics on a registry the app owns (no process-global state: tests build many apps in one process).

What an operator needs to tell "add replicas" from "tune batching": the time a request waits in the batching queue
(`digit_serve_queue_wait_seconds`) apart from the time the model computes (`digit_serve_inference_duration_seconds`)
and the time its image files take to decode (`digit_serve_decode_duration_seconds`), per model version, beside the
request counts and durations per protocol. Live state (queued images, requests at work, each version's state) is
read when Prometheus scrapes, so it costs the request path nothing.

Label values stay bounded: `protocol` is one of four names, `model` and `version` come from the repository (a model
a request names that does not exist is `unknown`), `code` is a status. A path no route knows creates no series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

PREFIX = "digit_serve"
UNKNOWN = "unknown"
PROTOCOLS = ("native", "tfserving", "v2_rest", "v2_grpc")
# Seconds, from a fraction of a millisecond (a JSON image in a quiet server) to seconds (a batch of photos, a queue
# under overload, a version loading).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class LiveState(Protocol):
    """What the scrape reads from the running server (service/serving.py's ServingState)."""

    def metric_snapshot(self) -> Snapshot: ...


@dataclass(frozen=True)
class Snapshot:
    inflight_requests: int
    queued_images: dict[tuple[str, str], int]  # (model, version) → images waiting in its batcher
    version_states: list[tuple[str, str, str]]  # (model, version, state) of every version the server knows


STATES = ("LOADING", "AVAILABLE", "UNLOADING", "FAILED")


class VersionMetrics:
    """A version's histograms, bound to its labels once (a label lookup per observation costs microseconds)."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self.queue_wait = metrics.queue_wait.labels(model, version)
        self.inference = metrics.inference.labels(model, version)
        self.batch_size = metrics.batch_size.labels(model, version)

    def batch(self, images: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.inference.observe(seconds)

    def waited(self, seconds: float) -> None:
        self.queue_wait.observe(seconds)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Inference requests answered, by protocol, model version and status",
            ("protocol", "model", "version", "code"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from a request's arrival to its answer",
            ("protocol", "model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time a request waited in its version's batching queue before the model took it",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "Time of one model call (one batch)",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Images per model call",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.decode = Histogram(
            f"{PREFIX}_decode_duration_seconds",
            "Time to decode and normalise a request's image files",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.load_duration = Histogram(
            f"{PREFIX}_model_load_duration_seconds",
            "Time to load, check and warm up a model version",
            ("model",),
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.load_failures = Counter(
            f"{PREFIX}_model_load_failures",
            "Model versions that could not be loaded",
            ("model",),
            registry=self.registry,
        )
        self._request_series: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def watch(self, state: LiveState) -> None:
        """Read the server's live state at every scrape."""
        self.registry.register(_LiveCollector(state))

    def for_version(self, model: str, version: int) -> VersionMetrics:
        return VersionMetrics(self, model, str(version))

    def request(self, protocol: str, model: str, version: str, code: str, seconds: float) -> None:
        key = (protocol, model, version, code)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(*key),
                self.request_duration.labels(protocol, model, version),
            )
        series[0].inc()
        series[1].observe(seconds)


class _LiveCollector:
    """Gauges computed at scrape time from the running server."""

    def __init__(self, state: LiveState) -> None:
        self.state = state

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        snapshot = self.state.metric_snapshot()
        yield from self._families(snapshot)

    def _families(self, snapshot: Snapshot | None = None) -> Iterator[Metric]:
        inflight = GaugeMetricFamily(f"{PREFIX}_inflight_requests", "Inference requests at work (admitted, body in)")
        queued = GaugeMetricFamily(
            f"{PREFIX}_queue_images", "Images waiting in a version's batching queue", labels=("model", "version")
        )
        states = GaugeMetricFamily(
            f"{PREFIX}_model_state",
            "1 for the state a model version is in (TF Serving's names), 0 for the others",
            labels=("model", "version", "state"),
        )
        if snapshot is not None:
            inflight.add_metric([], snapshot.inflight_requests)
            for (model, version), images in sorted(snapshot.queued_images.items()):
                queued.add_metric([model, version], images)
            for model, version, current in snapshot.version_states:
                for state in STATES:
                    states.add_metric([model, version, state], 1.0 if state == current else 0.0)
        yield inflight
        yield queued
        yield states
