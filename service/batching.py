"""Server-side micro-batching: concurrent requests are queued and classified together in one model call.

One asyncio task drains the queue; the model runs in one dedicated worker thread, so the event loop never
blocks and the model is never called from two threads at once. While a batch runs, new requests gather in the
queue and form the next batch, so batches grow with load on their own; `timeout` can make a partial batch wait
a little for company (0, the default, never waits: on CPU the model is the bottleneck, not the call count).

Each request keeps its own rows: jobs are never split across batches, results come back in order, and if a
batch fails each of its jobs is retried alone, so one bad request cannot fail its batch-mates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.errors import Overloaded

logger = logging.getLogger("service.batching")

Classify = Callable[[np.ndarray], np.ndarray]
DisconnectCheck = Callable[[], Awaitable[bool]]


class ClientGone(Exception):
    """The request was dropped from the queue because its client disconnected; there is no one to answer."""


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]
    is_disconnected: DisconnectCheck | None
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Queue requests, run them in batches of at most `max_batch_size` images, hand each its own rows back."""

    def __init__(
        self,
        classify: Classify,
        *,
        max_batch_size: int = 64,
        timeout_seconds: float = 0.0,
        queue_capacity: int = 8192,
        stale_after_seconds: float = 0.05,
    ) -> None:
        self._classify = classify
        self.max_batch_size = max_batch_size
        self.timeout_seconds = timeout_seconds
        self.queue_capacity = queue_capacity
        self.stale_after_seconds = stale_after_seconds
        self._jobs: deque[_Job] = deque()
        self._queued_images = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0
        self.images_run = 0
        self.dropped_disconnected = 0

    async def __aenter__(self) -> Batcher:
        self._worker = asyncio.create_task(self._drain_forever(), name="batcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for job in self._jobs:
            _fail(job, ClientGone())
        self._executor.shutdown(wait=True)

    @property
    def queued_images(self) -> int:
        return self._queued_images

    async def classify(self, images: np.ndarray, is_disconnected: DisconnectCheck | None = None) -> np.ndarray:
        """Probabilities for `images` (n, 28, 28) uint8; raises Overloaded when the queue is full."""
        if self._worker is None:
            raise RuntimeError("the batcher is not running; use it as an async context manager")
        count = len(images)
        if self._queued_images + count > self.queue_capacity:
            raise Overloaded(
                f"the server is at capacity ({self._queued_images} images queued, capacity {self.queue_capacity}); "
                "retry shortly"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(images, future, is_disconnected))
        self._queued_images += count
        self._wakeup.set()
        return await future

    async def _drain_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.timeout_seconds > 0 and self._queued_images < self.max_batch_size:
                await asyncio.sleep(self.timeout_seconds)
            jobs = await self._take_batch()
            if jobs:
                await self._run(loop, jobs)

    async def _take_batch(self) -> list[_Job]:
        """Whole jobs from the front of the queue, up to max_batch_size images (a larger job runs alone)."""
        jobs: list[_Job] = []
        images = 0
        now = time.perf_counter()
        while self._jobs:
            job = self._jobs[0]
            if jobs and images + len(job.images) > self.max_batch_size:
                break
            self._jobs.popleft()
            self._queued_images -= len(job.images)
            if await self._abandoned(job, now):
                continue
            jobs.append(job)
            images += len(job.images)
        return jobs

    async def _abandoned(self, job: _Job, now: float) -> bool:
        """A job nobody waits for: its handler was cancelled, or its client hung up while it queued."""
        if job.future.done():
            return True
        waited_long = now - job.queued_at > self.stale_after_seconds
        if waited_long and job.is_disconnected is not None and await job.is_disconnected():
            job.future.set_exception(ClientGone())
            self.dropped_disconnected += 1
            return True
        return False

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        batch = jobs[0].images if len(jobs) == 1 else np.concatenate([job.images for job in jobs])
        try:
            probabilities = await loop.run_in_executor(self._executor, self._classify_in_chunks, batch)
        except Exception:
            if len(jobs) == 1:
                logger.exception("inference failed for a batch of %d images", len(batch))
                _fail(jobs[0], RuntimeError("inference failed"))
                return
            for job in jobs:  # Find the culprit: every job alone, so the others still get their answers.
                await self._run(loop, [job])
            return
        self.batches_run += 1
        self.images_run += len(batch)
        start = 0
        for job in jobs:
            end = start + len(job.images)
            if not job.future.done():
                job.future.set_result(probabilities[start:end])
            start = end

    def _classify_in_chunks(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) <= self.max_batch_size:
            return self._classify(batch)
        chunks = [self._classify(batch[i : i + self.max_batch_size]) for i in range(0, len(batch), self.max_batch_size)]
        return np.concatenate(chunks)


def _fail(job: _Job, error: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(error)
