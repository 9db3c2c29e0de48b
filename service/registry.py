"""Every model and version the server holds, kept in step with the repository on disk (hot reload).

`reconcile` compares the repository with what is loaded and moves each version through TF Serving's states:

- a version the policy wants and the server lacks is LOADING: read, loaded, checked and warmed up off the event
  loop while the versions already serving go on answering, then switched in at once (AVAILABLE);
- a version that cannot be loaded is FAILED with its reason, and is tried again only when its folder changes;
- a version that leaves the policy, or whose folder is deleted, is UNLOADING: it takes no new requests, finishes
  those it holds (its leases and its queue), and is then released. It leaves only once every version the policy
  wants is AVAILABLE (rollback is never letting go of the good one), and the last version of a model is never
  released because of a file operation: it goes on serving from memory, with a warning.

Requests find their version with `resolve`, and hold it with a lease for as long as they use it. Everything here
runs on the event loop, except the blocking work (scanning folders, loading a SavedModel), which runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from service.batching import Batcher
from service.config import Settings
from service.digit_check import DigitCheck, digit_check_of
from service.errors import InvalidRequest, ModelNotFound, ModelNotReady, VersionNotFound
from service.metrics import Metrics
from service.policy import ModelPolicy, PolicyError, ServingConfig, Specific, read_serving_config
from service.repository import (
    Fingerprint,
    ModelLoadError,
    ModelVersion,
    VersionFolder,
    model_folders,
    read_version,
    scan_versions,
)
from service.runtimes import Runtime

logger = logging.getLogger("service.registry")


LoadRuntime = Callable[[ModelVersion], Runtime]


class VersionState(StrEnum):
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"


@dataclass
class LoadedVersion:
    """A version in memory: its card, its runtime and the batcher in front of it."""

    model: ModelVersion
    runtime_name: str
    batcher: Batcher
    runtime: Runtime
    digit_check: DigitCheck | None = None  # None: exported without one (is_digit null)
    leases: int = 0

    def info(self) -> dict[str, object]:
        return {"name": self.model.name, "version": self.model.version}


@dataclass
class VersionStatus:
    version: int
    state: VersionState
    fingerprint: Fingerprint | None = None
    error: str | None = None
    error_path: Path | None = None  # the file or folder the error is about
    warning: str | None = None
    available_since: datetime | None = None
    test_accuracy: float | None = None
    loaded: LoadedVersion | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "state": self.state.value,
            "error": self.error,
            "warning": self.warning,
            "available_since": self.available_since.isoformat().replace("+00:00", "Z")
            if self.available_since
            else None,
            "test_accuracy": self.test_accuracy,
            "runtime": self.loaded.runtime_name if self.loaded else None,
        }


@dataclass
class ServedModel:
    name: str
    policy: ModelPolicy
    versions: dict[int, VersionStatus] = field(default_factory=dict)

    def available(self) -> list[VersionStatus]:
        return [
            status
            for _, status in sorted(self.versions.items())
            if status.state is VersionState.AVAILABLE and status.loaded is not None
        ]

    def newest_available(self) -> LoadedVersion | None:
        available = self.available()
        return available[-1].loaded if available else None

    def describe_versions(self) -> str:
        if not self.versions:
            return "none"
        return ", ".join(f"{version} ({status.state.value})" for version, status in sorted(self.versions.items()))


class Registry:
    def __init__(
        self,
        settings: Settings,
        load_runtime: LoadRuntime,
        executor: ThreadPoolExecutor,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.repository = settings.repository_path()
        self.default_model = settings.default_model_name()
        self.only_model = settings.model_dir.resolve().name if settings.model_dir else None
        self.config_path = settings.serving_config_path()
        self._load_runtime = load_runtime
        self._executor = executor
        self.models: dict[str, ServedModel] = {}
        self._config = ServingConfig()
        self._config_stamp: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._starting = False
        self._unloading: set[asyncio.Task[None]] = set()
        self._default: LoadedVersion | None = None  # the hot path's answer to "which version", kept current

    # -- what requests see ------------------------------------------------------------------------------------

    @property
    def default(self) -> LoadedVersion | None:
        """The newest AVAILABLE version of the default model (None: not ready)."""
        return self._default

    def resolve(self, name: str | None, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The loaded version a request names: model (default: the default model), then a version number, a
        label, or neither (the newest available). Raises ModelNotFound, VersionNotFound or ModelNotReady."""
        if name is None and version is None and label is None and self._default is not None:
            return self._default
        if version is not None and label is not None:
            raise InvalidRequest("name a version or a label, not both", details={"location": ["query", "label"]})
        name = name or self.default_model
        model = self.model(name)
        if label is not None:
            if label not in model.policy.labels:
                raise VersionNotFound(
                    f"model {name!r} has no label {label[:64]!r}; labels: "
                    + (", ".join(f"{key} = {value}" for key, value in sorted(model.policy.labels.items())) or "none"),
                    details={"labels": model.policy.labels},
                )
            version = model.policy.labels[label]
        if version is None:
            loaded = model.newest_available()
            if loaded is None:
                raise ModelNotReady(
                    f"model {name!r} has no available version yet; versions: {model.describe_versions()}"
                )
            return loaded
        status = model.versions.get(version)
        if status is None or status.state is not VersionState.AVAILABLE or status.loaded is None:
            state = f"it is {status.state.value}" if status else "there is no such version"
            raise VersionNotFound(
                f"model {name!r} version {version} is not available ({state}); versions: {model.describe_versions()}",
                details={"available_versions": [available.version for available in model.available()]},
            )
        return status.loaded

    def model(self, name: str) -> ServedModel:
        """A model of the repository, whatever the state of its versions; ModelNotFound listing the models."""
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(
                f"no model named {name[:64]!r}; available models: {', '.join(sorted(self.models)) or 'none'}",
                details={"available_models": sorted(self.models)},
            )
        return model

    def describe(self) -> dict[str, object]:
        return {
            "default_model": self.default_model,
            "models": [
                {
                    "name": model.name,
                    "default": model.name == self.default_model,
                    "policy": model.policy.describe(),
                    "labels": model.policy.labels,
                    "versions": [status.as_dict() for _, status in sorted(model.versions.items(), reverse=True)],
                }
                for _, model in sorted(self.models.items())
            ],
        }

    # -- keeping in step with the repository ------------------------------------------------------------------

    async def reconcile(self, *, initial: bool = False) -> None:
        """Scan the repository and load, fail or unload versions until the server holds what the policy wants."""
        async with self._lock:
            self._starting = initial
            self._read_config(initial=initial)
            known = {
                name: {version: status.fingerprint for version, status in model.versions.items() if status.fingerprint}
                for name, model in self.models.items()
            }
            scanned = await run_in_threadpool(self._scan, known, not initial)
            for name in sorted(set(scanned) | set(self.models)):
                await self._reconcile_model(name, scanned.get(name, {}))
            self._refresh_default()

    def _read_config(self, *, initial: bool) -> None:
        try:
            stat = self.config_path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._config_stamp and not initial:
            return
        try:
            config = read_serving_config(self.config_path)
            self._check_config(config)
        except PolicyError as error:
            if initial:
                raise
            if stamp != self._config_stamp:
                logger.error("%s; keeping the previous serving configuration", error)
            self._config_stamp = stamp
            return
        self._config, self._config_stamp = config, stamp
        for name, model in self.models.items():
            model.policy = self._policy_for(name)
        if not initial:
            logger.info("serving configuration read from %s", self.config_path)

    def _check_config(self, config: ServingConfig) -> None:
        present = set(model_folders(self.repository)) | set(self.models)
        for name in config.models:
            if self.only_model is None and name not in present:
                raise PolicyError(
                    self.config_path, f"models.{name}: no such model in {self.repository}; models: {sorted(present)}"
                )

    def _policy_for(self, name: str) -> ModelPolicy:
        policy = self._config.for_model(name)
        pinned = self.settings.model_version
        if pinned is not None and name == self.default_model:
            # --model-version pins the default model; labels naming other versions find nothing (404)
            return ModelPolicy.model_construct(policy=Specific(specific=[pinned]), labels=policy.labels)
        return policy

    def _scan(self, known: dict[str, dict[int, Fingerprint]], settle: bool) -> dict[str, dict[int, VersionFolder]]:
        folders = model_folders(self.repository)
        if self.only_model is not None:
            folders = {name: path for name, path in folders.items() if name == self.only_model}
        return {name: scan_versions(path, known.get(name, {}), settle=settle) for name, path in folders.items()}

    async def _reconcile_model(self, name: str, folders: dict[int, VersionFolder]) -> None:
        model = self.models.get(name)
        if model is None:
            model = self.models[name] = ServedModel(name, self._policy_for(name))
            if self.metrics is not None:
                self.metrics.seen_model(name)
        aspired = model.policy.select(folders)
        for version in sorted(aspired, reverse=True):  # the newest first: it is the one that will answer
            await self._load_if_needed(model, version, folders[version])
        self._unload_what_left(model, aspired, folders)
        if not model.versions and not folders:
            del self.models[name]

    async def _load_if_needed(self, model: ServedModel, version: int, folder: VersionFolder) -> None:
        status = model.versions.get(version)
        if status is not None and status.state is not VersionState.FAILED:
            return  # loading, serving or draining: a version's folder is not reloaded in place (as in TF Serving)
        if status is not None and status.fingerprint == folder.fingerprint:
            return  # failed, and unchanged since: tried again only when its folder changes
        if not folder.settled:
            return  # still being written: the next scan looks again
        await self._load(model, version, folder)

    async def _load(self, model: ServedModel, version: int, folder: VersionFolder) -> None:
        status = VersionStatus(version, VersionState.LOADING, fingerprint=folder.fingerprint)
        model.versions[version] = status
        started = time.perf_counter()
        try:
            loaded_model, runtime = await run_in_threadpool(self._load_blocking, model.name, version, folder.path)
            batcher = Batcher(
                runtime.classify,
                max_batch_size=self.settings.max_batch_size,
                timeout_seconds=self.settings.batch_timeout_ms / 1000,
                queue_capacity=self.settings.queue_capacity,
                executor=self._executor,
                observer=self.metrics.for_version(model.name, version) if self.metrics else None,
            )
            await batcher.__aenter__()
        except ModelLoadError as error:
            status.error_path = error.path
            self._failed(model, status, error.problem, f"{error.path}: {error.problem}")
            return
        except Exception as error:  # TensorFlow and the file system raise many types; each means "not this version"
            problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            self._failed(model, status, problem, f"{folder.path}: {problem}")
            return
        check = digit_check_of(loaded_model, self.settings.digit_threshold)
        status.loaded = LoadedVersion(loaded_model, runtime.name, batcher, runtime, check)
        status.state = VersionState.AVAILABLE
        if self.metrics is not None:
            self.metrics.loaded(model.name, time.perf_counter() - started)
        status.available_since = datetime.now(UTC)
        status.test_accuracy = loaded_model.card["evaluation"]["test_accuracy"]
        self._refresh_default()
        logger.info(
            "serving %s version %d from %s with the %s runtime; loaded in %.1f s",
            model.name, version, folder.path, runtime.name, time.perf_counter() - started,
        )  # fmt: skip

    def _load_blocking(self, name: str, version: int, path: Path) -> tuple[ModelVersion, Runtime]:
        loaded_model = read_version(name, version, path, self.settings.card_schema_path())
        runtime = self._load_runtime(loaded_model)
        runtime.warm_up()
        return loaded_model, runtime

    def _failed(self, model: ServedModel, status: VersionStatus, problem: str, line: str) -> None:
        status.state = VersionState.FAILED
        status.error = problem
        if self.metrics is not None:
            self.metrics.load_failed(model.name)
        serving = model.newest_available()
        if self._starting and serving is None and model.name == self.default_model:
            return  # start-up fails on it, and says why in its one line
        keeps = f"; version {serving.model.version} goes on serving" if serving else ""
        logger.error("cannot serve %s version %d: %s%s", model.name, status.version, line, keeps)

    def _unload_what_left(self, model: ServedModel, aspired: set[int], folders: dict[int, VersionFolder]) -> None:
        all_aspired_available = all(
            version in model.versions and model.versions[version].state is VersionState.AVAILABLE for version in aspired
        )
        for version, status in sorted(model.versions.items()):
            if version in aspired:
                status.warning = None
                continue
            if status.state is VersionState.FAILED:
                del model.versions[version]  # left the policy or the disk: nothing to say about it any more
                continue
            if status.state is not VersionState.AVAILABLE:
                continue
            folder_gone = version not in folders
            others = [other for other in model.available() if other.version != version]
            if not others:
                if folder_gone and status.warning is None:
                    status.warning = (
                        "its folder was deleted; it goes on serving from memory until another version is available"
                    )
                    logger.warning("%s version %d: %s", model.name, version, status.warning)
                continue  # never from serving to not serving because of a file operation
            if folder_gone or all_aspired_available:
                self._start_unloading(model, status)

    def _start_unloading(self, model: ServedModel, status: VersionStatus) -> None:
        status.state = VersionState.UNLOADING
        self._refresh_default()
        logger.info("unloading %s version %d once the requests it holds are answered", model.name, status.version)
        task = asyncio.create_task(self._drain_and_release(model, status), name=f"unload {model.name}/{status.version}")
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _drain_and_release(self, model: ServedModel, status: VersionStatus) -> None:
        loaded = status.loaded
        if loaded is not None:
            while loaded.leases:
                await asyncio.sleep(0.01)
            await loaded.batcher.__aexit__(None, None, None)  # what is queued runs first
        status.loaded = None
        if model.versions.get(status.version) is status:
            del model.versions[status.version]
        await run_in_threadpool(gc.collect)
        logger.info("unloaded %s version %d", model.name, status.version)

    def _refresh_default(self) -> None:
        model = self.models.get(self.default_model)
        self._default = model.newest_available() if model else None

    async def close(self) -> None:
        """Answer what is queued, then stop every version's batcher."""
        for task in list(self._unloading):
            with contextlib.suppress(Exception):
                await task
        self._default = None
        for model in self.models.values():
            for status in model.versions.values():
                if status.loaded is not None:
                    await status.loaded.batcher.__aexit__(None, None, None)

    def batchers(self) -> list[Batcher]:
        return [
            status.loaded.batcher
            for model in self.models.values()
            for status in model.versions.values()
            if status.loaded is not None
        ]
