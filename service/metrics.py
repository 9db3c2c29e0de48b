"""Prometheus metrics on a registry the app owns (no process-global state: tests build many apps in one process).

What an operator needs to tell "add replicas" from "tune batching": the time a request waits in the batching queue
(`digit_serve_queue_wait_seconds`) apart from the time the model computes (`digit_serve_inference_duration_seconds`)
and the time its image files take to decode (`digit_serve_decode_duration_seconds`), per model version, beside the
request counts and durations per protocol. Live state (queued images, requests at work, each version's state) is
read when Prometheus scrapes.

The counts are kept here as plain numbers and handed to prometheus-client at scrape time. Every observation
happens on the event loop's thread (the middleware, the batchers' drain tasks, the gRPC handlers, the registry),
and so does the scrape, so no lock is needed: prometheus-client's own Counter and Histogram take a lock per bucket
and cost ~10 µs of a ~270 µs request (11% of the throughput at 64 clients, measured); these cost ~1 µs.

Label values stay bounded: `protocol` is one of four names, `model` and `version` come from the repository (a model
a request names that does not exist is `unknown`), `code` is a status. A path no route knows creates no series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

PREFIX = "digit_serve"
UNKNOWN = "unknown"
PROTOCOLS = ("native", "tfserving", "v2_rest", "v2_grpc")
# Seconds, from a fraction of a millisecond (a JSON image in a quiet server) to seconds (a batch of photos, a queue
# under overload, a version loading).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STATES = ("LOADING", "AVAILABLE", "UNLOADING", "FAILED")


@dataclass(frozen=True)
class Snapshot:
    inflight_requests: int
    queued_images: dict[tuple[str, str], int]  # (model, version) → images waiting in its batcher
    version_states: list[tuple[str, str, str]]  # (model, version, state) of every version the server knows


class LiveState(Protocol):
    """What the scrape reads from the running server (service/serving.py's ServingState)."""

    def metric_snapshot(self) -> Snapshot: ...


class Buckets:
    """One histogram series: counts per bucket (the last is +Inf), and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # Prometheus' buckets are "less than or equal"
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        points: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            points.append((bound, running))
        return points


class VersionMetrics:
    """A version's series, found once when it is loaded (the batcher reports to it on every batch)."""

    __slots__ = ("batch_size", "inference", "queue_wait")

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        key = (model, version)
        self.queue_wait = metrics.queue_wait.setdefault(key, Buckets(LATENCY_BUCKETS))
        self.inference = metrics.inference.setdefault(key, Buckets(LATENCY_BUCKETS))
        self.batch_size = metrics.batch_size.setdefault(key, Buckets(BATCH_BUCKETS))

    def batch(self, images: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.inference.observe(seconds)

    def waited(self, seconds: float) -> None:
        self.queue_wait.observe(seconds)


Verdicts = tuple[int, int] | None  # (images, of which not digits) of a request the digit check judged


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.request_duration: dict[tuple[str, str, str], Buckets] = {}
        self.queue_wait: dict[tuple[str, str], Buckets] = {}
        self.inference: dict[tuple[str, str], Buckets] = {}
        self.batch_size: dict[tuple[str, str], Buckets] = {}
        self.decode = Buckets(LATENCY_BUCKETS)
        self.load_duration: dict[str, Buckets] = {}
        self.load_failures: dict[str, int] = {}
        self.digit_checks: dict[tuple[str, str, str], int] = {}
        self._live: LiveState | None = None
        self.registry.register(_Exporter(self))

    def watch(self, state: LiveState) -> None:
        """Read the server's live state at every scrape."""
        self._live = state

    def for_version(self, model: str, version: int) -> VersionMetrics:
        return VersionMetrics(self, model, str(version))

    def request(
        self, protocol: str, model: str, version: str, code: str, seconds: float, *, verdicts: Verdicts = None
    ) -> None:
        """One inference request answered; `verdicts`: (images, not digits) when the version's digit check ran."""
        if verdicts is not None:
            self.judged(model, version, *verdicts)
        key = (protocol, model, version, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        series = self.request_duration.get(key[:3])
        if series is None:
            series = self.request_duration[key[:3]] = Buckets(LATENCY_BUCKETS)
        series.observe(seconds)

    def judged(self, model: str, version: str, images: int, not_digits: int) -> None:
        """A request's images as the version's digit check saw them: digits, and not digits."""
        for verdict, count in (("digit", images - not_digits), ("not_digit", not_digits)):
            key = (model, version, verdict)
            self.digit_checks[key] = self.digit_checks.get(key, 0) + count

    def decoded(self, seconds: float) -> None:
        self.decode.observe(seconds)

    def seen_model(self, model: str) -> None:
        """A model of the repository: its failure count exists, at 0, before any failure."""
        self.load_failures.setdefault(model, 0)

    def loaded(self, model: str, seconds: float) -> None:
        self.load_duration.setdefault(model, Buckets(LOAD_BUCKETS)).observe(seconds)

    def load_failed(self, model: str) -> None:
        self.load_failures[model] = self.load_failures.get(model, 0) + 1

    def snapshot(self) -> Snapshot | None:
        return self._live.metric_snapshot() if self._live is not None else None


class _Exporter:
    """Hands the counts to prometheus-client at scrape time, in Prometheus' families."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return list(self._families(live=False))

    def collect(self) -> Iterator[Metric]:
        yield from self._families(live=True)

    def _families(self, *, live: bool) -> Iterator[Metric]:
        metrics = self.metrics
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Inference requests answered, by protocol, model version and status",
            labels=("protocol", "model", "version", "code"),
        )
        for key, count in sorted(metrics.requests.items()):
            requests.add_metric(list(key), count)
        yield requests
        yield _histogram(
            "request_duration_seconds",
            "Time from a request's arrival to its answer",
            ("protocol", "model", "version"),
            metrics.request_duration.items(),
        )
        yield _histogram(
            "queue_wait_seconds",
            "Time a request waited in its version's batching queue before the model took it",
            ("model", "version"),
            metrics.queue_wait.items(),
        )
        yield _histogram(
            "inference_duration_seconds",
            "Time of one model call (one batch)",
            ("model", "version"),
            metrics.inference.items(),
        )
        yield _histogram("batch_size", "Images per model call", ("model", "version"), metrics.batch_size.items())
        yield _histogram(
            "decode_duration_seconds",
            "Time to decode and normalise a request's image files",
            (),
            [((), metrics.decode)],
        )
        yield _histogram(
            "model_load_duration_seconds",
            "Time to load, check and warm up a model version",
            ("model",),
            [((model,), series) for model, series in metrics.load_duration.items()],
        )
        failures = CounterMetricFamily(
            f"{PREFIX}_model_load_failures", "Model versions that could not be loaded", labels=("model",)
        )
        for model, count in sorted(metrics.load_failures.items()):
            failures.add_metric([model], count)
        yield failures
        checks = CounterMetricFamily(
            f"{PREFIX}_digit_check_images",
            "Images judged by a version's digit check, by verdict (digit or not_digit)",
            labels=("model", "version", "verdict"),
        )
        for labels, count in sorted(metrics.digit_checks.items()):
            checks.add_metric(list(labels), count)
        yield checks
        yield from _live_families(metrics.snapshot() if live else None)


def _histogram(
    name: str, documentation: str, labels: tuple[str, ...], series: Iterable[tuple[tuple[str, ...], Buckets]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)
    for key, buckets in sorted(series, key=lambda item: item[0]):
        family.add_metric(list(key), buckets.cumulative(), buckets.total)
    return family


def _live_families(snapshot: Snapshot | None) -> Iterator[Metric]:
    """Gauges read from the running server at scrape time."""
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
