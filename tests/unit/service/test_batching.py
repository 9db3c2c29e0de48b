"""The micro-batcher in isolation, with a fake model whose answers reveal which image they came from."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from service.admission import Deadline
from service.batching import Batcher
from service.errors import ClientGone, DeadlineExceeded, Overloaded, ServiceUnavailable, ShuttingDown

pytestmark = pytest.mark.anyio


def echo_model(calls: list[int]) -> object:
    """Row i of the answer carries the first pixel of image i, so every request can check it got its own rows."""

    def classify(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        rows = np.zeros((len(images), 10), dtype=np.float32)
        rows[:, 0] = images[:, 0, 0]
        return rows

    return classify


def gated_model(release: threading.Event, calls: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    """A model that holds every call until `release` is set, then records the batch size."""

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(5)
        calls.append(len(images))
        return np.zeros((len(images), 10), dtype=np.float32)

    return slow


def images_marked(*marks: int) -> np.ndarray:
    images = np.zeros((len(marks), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = marks
    return images


async def test_batcher_gives_each_request_its_own_rows_in_order() -> None:
    calls: list[int] = []
    async with Batcher(echo_model(calls), max_batch_size=16) as batcher:
        requests = [images_marked(*range(i, i + 1 + i % 3)) for i in range(40)]
        results = await asyncio.gather(*(batcher.classify(images) for images in requests))
    for images, rows in zip(requests, results, strict=True):
        assert rows[:, 0].tolist() == images[:, 0, 0].tolist()
    assert sum(calls) == sum(len(images) for images in requests)
    assert max(calls) <= 16
    assert len(calls) < len(requests), "concurrent requests should share model calls"


async def test_batcher_runs_a_request_larger_than_the_batch_in_chunks() -> None:
    calls: list[int] = []
    async with Batcher(echo_model(calls), max_batch_size=8) as batcher:
        rows = await batcher.classify(images_marked(*range(20)))
    assert rows[:, 0].tolist() == list(range(20))
    assert calls == [8, 8, 4]


async def test_batcher_isolates_a_failing_request_from_its_batch_mates() -> None:
    def classify(images: np.ndarray) -> np.ndarray:
        if (images[:, 0, 0] == 99).any():
            raise ValueError("poisoned")
        return np.repeat(images[:, 0, :1].astype(np.float32), 10, axis=1)

    async with Batcher(classify, max_batch_size=64) as batcher:
        results = await asyncio.gather(
            *(batcher.classify(images_marked(mark)) for mark in (1, 99, 3)), return_exceptions=True
        )
    assert isinstance(results[1], RuntimeError)
    assert results[0][0, 0] == 1 and results[2][0, 0] == 3


async def test_batcher_refuses_work_beyond_its_queue_capacity() -> None:
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(5)
        return np.zeros((len(images), 10), dtype=np.float32)

    async with Batcher(slow, max_batch_size=4, queue_capacity=6) as batcher:
        running = asyncio.create_task(batcher.classify(images_marked(1, 2, 3, 4)))
        await asyncio.sleep(0.05)  # the first batch is now inside the model, out of the queue
        queued = asyncio.create_task(batcher.classify(images_marked(*range(6))))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as raised:
            await batcher.classify(images_marked(7))
        assert raised.value.status_code == 503 and raised.value.headers["Retry-After"] == "1"
        release.set()
        assert len(await running) == 4 and len(await queued) == 6


async def test_batcher_drops_requests_whose_client_went_away() -> None:
    release = threading.Event()
    calls: list[int] = []
    slow = gated_model(release, calls)

    async def gone() -> bool:
        return True

    async def here() -> bool:
        return False

    async with Batcher(slow, max_batch_size=4, stale_after_seconds=0.0) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        abandoned = asyncio.create_task(batcher.classify(images_marked(2, 2), is_disconnected=gone))
        kept = asyncio.create_task(batcher.classify(images_marked(3), is_disconnected=here))
        await asyncio.sleep(0.01)
        release.set()
        await first
        assert (await kept)[0, 0] == 0
        with pytest.raises(ClientGone):
            await abandoned
    assert calls == [1, 1]
    assert batcher.dropped_disconnected == 1


async def test_batcher_skips_cancelled_requests() -> None:
    release = threading.Event()
    calls: list[int] = []
    slow = gated_model(release, calls)

    async with Batcher(slow, max_batch_size=8) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        cancelled = asyncio.create_task(batcher.classify(images_marked(2, 2, 2)))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        release.set()
        await first
        await asyncio.sleep(0.05)
    assert calls == [1]


async def test_batcher_waits_for_company_when_given_a_timeout() -> None:
    calls: list[int] = []
    async with Batcher(echo_model(calls), max_batch_size=8, timeout_seconds=0.05) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(batcher.classify(images_marked(2)))
        await asyncio.gather(first, second)
    assert calls == [2]


async def test_batcher_survives_a_fault_while_forming_a_batch() -> None:
    """Images of two shapes cannot be concatenated: that batch fails, and the worker goes on serving."""
    calls: list[int] = []
    release = threading.Event()
    async with Batcher(gated_model(release, calls), max_batch_size=8) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        odd = asyncio.create_task(batcher.classify(np.zeros((1, 27, 28), dtype=np.uint8)))
        normal = asyncio.create_task(batcher.classify(images_marked(2)))
        await asyncio.sleep(0.01)
        release.set()
        await first
        results = await asyncio.wait_for(asyncio.gather(odd, normal, return_exceptions=True), timeout=5)
        assert all(isinstance(result, Exception) for result in results)
        assert batcher.running
        assert len(await asyncio.wait_for(batcher.classify(images_marked(3)), timeout=5)) == 1


async def test_batcher_survives_a_request_cancelled_during_its_disconnect_check() -> None:
    """The check awaits; if the request's handler is cancelled meanwhile, its future is already done."""
    release = threading.Event()
    calls: list[int] = []
    victim: list[asyncio.Task[np.ndarray]] = []

    async def cancel_myself_then_report_gone() -> bool:
        victim[0].cancel()
        await asyncio.sleep(0)
        return True

    async with Batcher(gated_model(release, calls), max_batch_size=4, stale_after_seconds=0.0) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        victim.append(asyncio.create_task(batcher.classify(images_marked(2), cancel_myself_then_report_gone)))
        await asyncio.sleep(0.01)
        release.set()
        await first
        await asyncio.sleep(0.05)
        assert batcher.running
        assert len(await asyncio.wait_for(batcher.classify(images_marked(3)), timeout=5)) == 1


class WorkerKilled(BaseException):
    """Something no `except Exception` catches: the drain task ends."""


async def test_batcher_whose_worker_died_answers_503_instead_of_hanging() -> None:
    release = threading.Event()
    calls: list[int] = []
    async with Batcher(gated_model(release, calls), max_batch_size=4) as batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(batcher.classify(images_marked(2)))
        await asyncio.sleep(0.01)

        async def killed(*_: object) -> None:
            raise WorkerKilled("injected")

        batcher._run = killed  # type: ignore[method-assign]
        release.set()
        with pytest.raises(ServiceUnavailable) as raised:
            await asyncio.wait_for(waiting, timeout=5)
        assert raised.value.status_code == 503 and "WorkerKilled" in raised.value.message
        assert not batcher.running
        with pytest.raises(ServiceUnavailable):
            await batcher.classify(images_marked(3))
        first.cancel()


async def test_batcher_drops_a_request_past_its_deadline() -> None:
    calls: list[int] = []
    async with Batcher(echo_model(calls)) as batcher:
        with pytest.raises(DeadlineExceeded) as raised:
            await batcher.classify(images_marked(1), deadline=Deadline(time.monotonic() - 1, 5.0))
        assert raised.value.status_code == 504
        assert len(await batcher.classify(images_marked(2), deadline=Deadline(time.monotonic() + 60, 60_000))) == 1
    assert calls == [1]
    assert batcher.dropped_late == 1


async def test_batcher_shutdown_runs_the_queue_then_answers_503_shutting_down() -> None:
    release = threading.Event()
    calls: list[int] = []
    batcher = Batcher(gated_model(release, calls), max_batch_size=1, drain_seconds=0.2)
    async with batcher:
        first = asyncio.create_task(batcher.classify(images_marked(1)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.classify(images_marked(2)))
        await asyncio.sleep(0.01)
        threading.Timer(0.5, release.set).start()  # the model call in progress outlasts the drain
    with pytest.raises(ShuttingDown) as raised:
        await queued
    assert raised.value.status_code == 503 and raised.value.headers["Retry-After"] == "1"
    assert len(await first) == 1, "the request already in the model completes"
    with pytest.raises(ShuttingDown):
        await batcher.classify(images_marked(3))
