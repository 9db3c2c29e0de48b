"""The metrics apart from a server: queue wait and compute land in their own histograms, and the live gauges."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from prometheus_client import generate_latest

from service.batching import Batcher
from service.metrics import Metrics, Snapshot

COMPUTE_SECONDS = 0.2


def histogram(metrics: Metrics, name: str, **labels: str) -> tuple[float, float]:
    """(count, sum) of one histogram's series."""
    count = metrics.registry.get_sample_value(f"{name}_count", labels) or 0.0
    total = metrics.registry.get_sample_value(f"{name}_sum", labels) or 0.0
    return count, total


@pytest.mark.anyio
async def test_metrics_slow_model_shows_in_inference_and_a_full_queue_in_queue_wait() -> None:
    """One image per model call, each taking COMPUTE_SECONDS: the first request waits for nothing, the others queue
    behind it; the model's time is in inference_duration, the waiting in queue_wait, and neither in the other."""
    metrics = Metrics()

    def slow_model(pixels: np.ndarray) -> np.ndarray:
        time.sleep(COMPUTE_SECONDS)
        return np.full((len(pixels), 10), 0.1, dtype=np.float32)

    async with Batcher(slow_model, max_batch_size=1, observer=metrics.for_version("slow", 3)) as batcher:
        await asyncio.gather(*(batcher.classify(np.zeros((1, 28, 28), np.float32)) for _ in range(3)))
    labels = {"model": "slow", "version": "3"}
    calls, computing = histogram(metrics, "digit_serve_inference_duration_seconds", **labels)
    queued, waiting = histogram(metrics, "digit_serve_queue_wait_seconds", **labels)
    assert calls == 3 and computing == pytest.approx(3 * COMPUTE_SECONDS, rel=0.3)
    # The second request waited one model call, the third two: three calls' worth of queueing in all.
    assert queued == 3 and waiting == pytest.approx(3 * COMPUTE_SECONDS, rel=0.3)
    assert histogram(metrics, "digit_serve_batch_size", **labels) == (3, 3)


@pytest.mark.anyio
async def test_metrics_fast_model_under_no_load_has_no_queue_wait() -> None:
    metrics = Metrics()
    async with Batcher(
        lambda pixels: np.zeros((len(pixels), 10), np.float32), observer=metrics.for_version("m", 1)
    ) as batcher:
        for _ in range(5):
            await batcher.classify(np.zeros((2, 28, 28), np.float32))
    _, waiting = histogram(metrics, "digit_serve_queue_wait_seconds", model="m", version="1")
    assert waiting < 0.05


class FakeServer:
    def metric_snapshot(self) -> Snapshot:
        return Snapshot(3, {("m", "2"): 17}, [("m", "2", "AVAILABLE"), ("m", "1", "UNLOADING")])


def test_metrics_live_gauges_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    metrics.watch(FakeServer())
    sample = metrics.registry.get_sample_value
    assert sample("digit_serve_inflight_requests") == 3
    assert sample("digit_serve_queue_images", {"model": "m", "version": "2"}) == 17
    assert sample("digit_serve_model_state", {"model": "m", "version": "1", "state": "UNLOADING"}) == 1
    assert sample("digit_serve_model_state", {"model": "m", "version": "1", "state": "AVAILABLE"}) == 0
    assert b"process_cpu_seconds_total" in generate_latest(metrics.registry)


def test_metrics_two_apps_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.request("native", "m", "1", "200", 0.01)
    assert (
        first.registry.get_sample_value(
            "digit_serve_requests_total", {"protocol": "native", "model": "m", "version": "1", "code": "200"}
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "digit_serve_requests_total", {"protocol": "native", "model": "m", "version": "1", "code": "200"}
        )
        is None
    )
