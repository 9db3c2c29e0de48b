"""Server-side micro-batching: concurrent requests are queued and classified together in one model call.

One asyncio task drains the queue; the model runs in one dedicated worker thread, so the event loop never
blocks and the model is never called from two threads at once. While a batch runs, new requests gather in the
queue and form the next batch, so batches grow with load on their own; `timeout` can make a partial batch wait
a little for company (0, the default, never waits: on CPU the model is the bottleneck, not the call count).

Each request keeps its own rows: jobs are never split across batches, results come back in order, and if a
batch fails each of its jobs is retried alone, so one bad request cannot fail its batch-mates. A job whose
client has gone, or whose deadline has passed (504 `deadline_exceeded`), is dropped before it reaches the model.

The drain task is supervised: a fault while forming or finishing a batch fails that batch's requests and the
task goes on; if the task ends anyway, `running` turns false (readiness answers 503), waiting requests get 503
`service_unavailable` and new ones are refused with it, so nothing hangs. On shutdown the queued requests are
still run, for up to `drain_seconds`; whatever is left then gets 503 `shutting_down`.
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
from typing import Protocol, TypeVar

import numpy as np

from service.admission import NO_DEADLINE, Deadline
from service.errors import ClientGone, Overloaded, ServiceUnavailable, ShuttingDown

T = TypeVar("T")

logger = logging.getLogger("service.batching")

Classify = Callable[[np.ndarray], np.ndarray]
DisconnectCheck = Callable[[], Awaitable[bool]]


class QueueStats(Protocol):
    """Where a request's wait in the queue is written (service/core.py's RequestStats)."""

    queue_seconds: float


class BatchObserver(Protocol):
    """Where the batcher reports its work (service/metrics.py's VersionMetrics)."""

    def batch(self, images: int, seconds: float) -> None: ...

    def waited(self, seconds: float) -> None: ...


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]
    is_disconnected: DisconnectCheck | None
    deadline: Deadline
    stats: QueueStats | None = None
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
        drain_seconds: float = 5.0,
        executor: ThreadPoolExecutor | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        self._classify = classify
        self._observer = observer
        self.max_batch_size = max_batch_size
        self.timeout_seconds = timeout_seconds
        self.queue_capacity = queue_capacity
        self.stale_after_seconds = stale_after_seconds
        self.drain_seconds = drain_seconds
        self._jobs: deque[_Job] = deque()
        self._queued_images = 0
        self._wakeup = asyncio.Event()
        # Several batchers (one per model version) may share one inference thread: the model calls then take turns
        # instead of fighting over the cores. A batcher shuts down only the thread it made.
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task[None] | None = None
        self._in_hand: list[_Job] = []  # the batch the drain task is working on
        self._closing = False
        self.stopped_because: str | None = None  # why the drain task ended, if it ended on its own
        self.batches_run = 0
        self.images_run = 0
        self.dropped_disconnected = 0
        self.dropped_late = 0

    async def __aenter__(self) -> Batcher:
        self._worker = asyncio.create_task(self._drain_forever(), name="batcher")
        self._worker.add_done_callback(self._worker_ended)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Run what is queued (up to drain_seconds), then stop; requests still queued get 503 shutting_down."""
        self._closing = True
        if self._worker is not None:
            deadline = time.monotonic() + self.drain_seconds
            while self._jobs and self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            self._fail_queued(ShuttingDown("the server is shutting down; send the request again"))
            while self._in_hand and self.running:  # the batch inside the model completes (milliseconds)
                await asyncio.sleep(0.01)
            if not self._worker.done():
                self._worker.remove_done_callback(self._worker_ended)
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def running(self) -> bool:
        """The drain task is alive: queued requests will be answered."""
        return self._worker is not None and not self._worker.done()

    async def run_on_inference_thread(self, function: Callable[[], T]) -> T:
        """Run `function` on the thread that runs the model calls, between batches: runtimes whose interpreters
        are not thread-safe (LiteRT) see one caller only."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def classify(
        self,
        images: np.ndarray,
        is_disconnected: DisconnectCheck | None = None,
        deadline: Deadline = NO_DEADLINE,
        stats: QueueStats | None = None,
    ) -> np.ndarray:
        """Probabilities for `images` (n, 28, 28) uint8; raises Overloaded when the queue is full, ShuttingDown
        when the server is stopping, ServiceUnavailable when the drain task has stopped."""
        if self._worker is None:
            raise RuntimeError("the batcher is not running; use it as an async context manager")
        if self._closing:
            raise ShuttingDown("the server is shutting down; send the request again")
        if not self.running:
            raise self.unavailable()
        count = len(images)
        if self._queued_images + count > self.queue_capacity:
            raise Overloaded(
                f"the server is at capacity ({self._queued_images} images queued, capacity {self.queue_capacity}); "
                "retry shortly"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(images, future, is_disconnected, deadline, stats))
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
            self._in_hand = []
            try:
                self._in_hand = await self._take_batch()
                if self._in_hand:
                    await self._run(loop, self._in_hand)
                self._in_hand = []
            except Exception:  # a fault of ours around the model call: its batch fails, the next one runs
                logger.exception("the batcher failed a batch of %d requests", len(self._in_hand))
                for job in self._in_hand:
                    _fail(job, RuntimeError("the batch could not be run"))

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        """The drain task ended on its own: say why, and answer everyone still waiting instead of leaving them."""
        if worker.cancelled():
            self.stopped_because = "it was cancelled"
        else:
            error = worker.exception()
            self.stopped_because = f"{type(error).__name__}: {error}" if error else "it returned"
        logger.critical("the inference worker stopped (%s); the server is not ready any more", self.stopped_because)
        for job in self._in_hand:
            _fail(job, self.unavailable())
        self._fail_queued(self.unavailable())

    def unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(f"the inference worker has stopped ({self.stopped_because}); use another replica")

    def _fail_queued(self, error: Exception) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            self._queued_images -= len(job.images)
            _fail(job, error)

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
            try:
                if await self._abandoned(job, now):
                    continue
            except Exception:  # the disconnect check itself failed: the job cannot be judged, so it fails alone
                logger.exception("could not check whether a queued request's client is still there")
                _fail(job, RuntimeError("the request could not be queued"))
                continue
            jobs.append(job)
            images += len(job.images)
            waited = now - job.queued_at
            if job.stats is not None:
                job.stats.queue_seconds = waited
            if self._observer is not None:
                self._observer.waited(waited)
        return jobs

    async def _abandoned(self, job: _Job, now: float) -> bool:
        """A job nobody waits for: its handler was cancelled, its client hung up while it queued, or its deadline
        passed."""
        if job.future.done():
            return True
        if job.deadline.expired():
            self.dropped_late += 1
            _fail(job, job.deadline.error())
            return True
        waited_long = now - job.queued_at > self.stale_after_seconds
        if waited_long and job.is_disconnected is not None and await job.is_disconnected():
            self.dropped_disconnected += 1
            _fail(job, ClientGone())  # the future may have been cancelled while the check awaited
            return True
        return False

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        batch = jobs[0].images if len(jobs) == 1 else np.concatenate([job.images for job in jobs])
        started = time.perf_counter()
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
        if self._observer is not None:
            self._observer.batch(len(batch), time.perf_counter() - started)
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
