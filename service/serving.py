"""What the server holds while it runs: the model registry (every model and version it serves, kept in step with
the repository), the decode pool and the admission control that every inference request passes.

`open_serving` is the start-up the lifespan runs: load, check and warm up every version the policies want, make sure
the default model has one AVAILABLE, start watching the repository (every POLL_SECONDS and on SIGHUP), and only then
mark the state ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.admission import Admission
from service.config import Settings
from service.decoding import DecodePool
from service.errors import ServiceError
from service.metrics import Metrics, Snapshot
from service.registry import LoadedVersion, LoadRuntime, Registry, VersionState
from service.repository import ModelLoadError, ModelVersion, find_version
from service.runtimes import Runtime, RuntimeOptions, load_runtime

logger = logging.getLogger("service.serving")


@dataclass
class ServingState:
    settings: Settings
    registry: Registry
    decode_pool: DecodePool
    admission: Admission
    metrics: Metrics | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False

    @property
    def is_ready(self) -> bool:
        """Started, and the default model has an AVAILABLE version whose inference worker runs."""
        default = self.registry.default
        return self.ready and default is not None and default.batcher.running

    @property
    def default(self) -> LoadedVersion | None:
        return self.registry.default

    def metric_snapshot(self) -> Snapshot:
        """What /metrics reads at each scrape: requests at work, images queued per version, every version's state."""
        queued: dict[tuple[str, str], int] = {}
        states = []
        for model in self.registry.models.values():
            for status in model.versions.values():
                version = str(status.version)
                states.append((model.name, version, status.state.value))
                if status.loaded is not None:
                    queued[(model.name, version)] = status.loaded.batcher.queued_images
        return Snapshot(inflight_requests=self.admission.requests, queued_images=queued, version_states=states)

    def unavailable(self) -> ServiceError | None:
        """Why the default version cannot answer, when it is loaded but its worker stopped."""
        default = self.registry.default
        if self.ready and default is not None and not default.batcher.running:
            return default.batcher.unavailable()
        return None


def load_runtime_for(settings: Settings) -> LoadRuntime:
    """How the registry loads a version: the runtime the settings name (service/runtimes/)."""
    options = RuntimeOptions(threads=settings.inference_threads, max_batch_size=settings.max_batch_size)

    def load(model: ModelVersion) -> Runtime:
        return load_runtime(model, settings.runtime, options)

    return load


@contextlib.asynccontextmanager
async def open_serving(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[ServingState]:
    """Load, check and warm the repository's versions, run their batchers, watch the repository; raises
    ModelLoadError if the default model cannot be served, PolicyError if serving.toml is unusable."""
    started = time.perf_counter()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    registry = Registry(settings, load_runtime_for(settings), executor, metrics)
    try:
        await registry.reconcile(initial=True)
        _check_default_served(registry, settings)
        state = ServingState(
            settings=settings,
            registry=registry,
            decode_pool=DecodePool(
                threads=settings.decode_threads,
                max_image_pixels=settings.max_image_pixels,
                max_request_pixels=settings.max_request_pixels,
                backlog_pixels=settings.decode_backlog_pixels,
                max_decode_bytes=settings.max_decode_bytes,
            ),
            admission=Admission(
                max_requests=settings.max_concurrent_requests,
                image_capacity=settings.queue_capacity,
                max_images_per_request=settings.max_images_per_request,
            ),
            metrics=metrics,
        )
        if metrics is not None:
            metrics.watch(state)
        # TensorFlow leaves a million long-lived objects behind; moving them out of the collector's sight keeps
        # its full collections from stalling the event loop for tens of milliseconds under load.
        gc.freeze()
        state.ready = True
        served = ", ".join(
            f"{model.name} {[status.version for status in model.available()]}" for model in registry.models.values()
        )
        logger.info(
            "serving %s from %s (default %s); ready in %.1f s",
            served, registry.repository, registry.default_model, time.perf_counter() - started,
        )  # fmt: skip
        async with watching(registry, settings.poll_seconds):
            try:
                yield state
            finally:
                state.ready = False
                _log_totals(state)
    finally:
        await registry.close()
        executor.shutdown(wait=True)


def _check_default_served(registry: Registry, settings: Settings) -> None:
    """Start-up fails, naming the path and the problem, when the default model has no AVAILABLE version."""
    if registry.default is not None:
        return
    model_folder = registry.repository / registry.default_model
    find_version(model_folder, settings.model_version)  # raises for a missing folder, no versions, a missing pin
    model = registry.models.get(registry.default_model)
    failed = [status for status in (model.versions.values() if model else []) if status.state is VersionState.FAILED]
    if failed:
        newest = max(failed, key=lambda status: status.version)
        path = newest.error_path or model_folder / str(newest.version)
        raise ModelLoadError(path, newest.error or "could not be loaded")
    raise ModelLoadError(model_folder, "no version could be loaded")


@contextlib.asynccontextmanager
async def watching(registry: Registry, poll_seconds: float) -> AsyncIterator[None]:
    """Rescan the repository every `poll_seconds` (0: never) and whenever the process gets SIGHUP."""
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread: no signals
        loop.add_signal_handler(signal.SIGHUP, wake.set)
    task = asyncio.create_task(_watch(registry, poll_seconds, wake), name="repository watcher")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.remove_signal_handler(signal.SIGHUP)


async def _watch(registry: Registry, poll_seconds: float, wake: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=poll_seconds or None)
        if wake.is_set():
            logger.info("SIGHUP: scanning the model repository")
        wake.clear()
        try:
            await registry.reconcile()
        except Exception:  # a fault of ours while reconciling: what serves goes on serving, the next scan retries
            logger.exception("could not reconcile the model repository; the versions loaded go on serving")


def _log_totals(state: ServingState) -> None:
    batchers = state.registry.batchers()
    batches = sum(batcher.batches_run for batcher in batchers)
    images = sum(batcher.images_run for batcher in batchers)
    logger.info(
        "ran %d batches of %d images in all (mean %.1f per batch); dropped %d requests whose client left "
        "and %d past their deadline; refused %d requests at admission",
        batches, images, images / max(batches, 1),
        sum(batcher.dropped_disconnected for batcher in batchers) + state.decode_pool.abandoned,
        sum(batcher.dropped_late for batcher in batchers), state.admission.refused,
    )  # fmt: skip
