"""What the server holds while it runs: the model version, its runtime, the batcher in front of it, the decode pool
and the admission control that every inference request passes.

`open_serving` is the start-up the lifespan runs: locate the version, load and check it, warm it up for every padded
batch size the batcher can form, start the batcher, and only then mark the state ready.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from service.admission import Admission
from service.batching import Batcher
from service.config import Settings
from service.decoding import DecodePool
from service.repository import ModelVersion, locate_model

logger = logging.getLogger("service.serving")


@dataclass
class ServingState:
    settings: Settings
    model: ModelVersion
    batcher: Batcher
    runtime_name: str
    decode_pool: DecodePool
    admission: Admission
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False

    @property
    def is_ready(self) -> bool:
        """Loaded, warmed up, and the inference worker is running."""
        return self.ready and self.batcher.running

    def model_info(self) -> dict[str, object]:
        return {"name": self.model.name, "version": self.model.version}


@contextlib.asynccontextmanager
async def open_serving(settings: Settings) -> AsyncIterator[ServingState]:
    """Load, check and warm the model, run the batcher; raises ModelLoadError if the model cannot be served."""
    started = time.perf_counter()
    model = locate_model(settings.model_dir, settings.model_version, settings.card_schema_path())
    from service.runtime import load_runtime  # TensorFlow is imported here, at start-up, never at import time.

    runtime = await run_in_threadpool(load_runtime, model, settings)
    await run_in_threadpool(runtime.warm_up)
    batcher = Batcher(
        runtime.classify,
        max_batch_size=settings.max_batch_size,
        timeout_seconds=settings.batch_timeout_ms / 1000,
        queue_capacity=settings.queue_capacity,
    )
    async with batcher:
        state = ServingState(
            settings=settings,
            model=model,
            batcher=batcher,
            runtime_name=runtime.name,
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
        )
        # TensorFlow leaves a million long-lived objects behind; moving them out of the collector's sight keeps
        # its full collections from stalling the event loop for tens of milliseconds under load.
        gc.freeze()
        state.ready = True
        logger.info(
            "serving %s version %d from %s with the %s runtime; ready in %.1f s",
            model.name, model.version, model.path, runtime.name, time.perf_counter() - started,
        )  # fmt: skip
        try:
            yield state
        finally:
            state.ready = False
            logger.info(
                "ran %d batches of %d images in all (mean %.1f per batch); dropped %d requests whose client left "
                "and %d past their deadline; refused %d requests at admission",
                batcher.batches_run, batcher.images_run, batcher.images_run / max(batcher.batches_run, 1),
                batcher.dropped_disconnected + state.decode_pool.abandoned, batcher.dropped_late,
                state.admission.refused,
            )  # fmt: skip
