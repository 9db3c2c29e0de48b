"""Run the selected scenarios: each server once, and for each of its scenarios and concurrency levels a warm-up,
then the measured runs, whose medians are what the report shows.

Servers run one at a time, in catalog order, so no idle server holds memory or CPU while another is measured.
The results are plain JSON-ready dictionaries; bench/README.md describes their fields.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.catalog import SERVERS, ScenarioSpec, ServerSpec
from bench.launcher import RunningServer, ServerStartError, running_server
from bench.load import LoadGeneratorError, LoadResult, LoadTarget
from bench.loadgen import run_httpx
from bench.payloads import Payload
from bench.procstats import snapshot_group, wait_until_idle
from bench.wrk import run_wrk

LoadGenerator = Callable[[LoadTarget, int, float, float], LoadResult]
LOAD_GENERATORS: dict[str, LoadGenerator] = {"wrk": run_wrk, "httpx": run_httpx}
MEGABYTE = 1024 * 1024
# The longest the harness waits for a server to work off what a stopped load generator left queued.
SETTLE_TIMEOUT_SECONDS = 120.0
SAMPLE_RESPONSE_CHARACTERS = 300


@dataclass(frozen=True)
class RunSettings:
    duration_seconds: float
    warmup_seconds: float
    concurrency_levels: tuple[int, ...]
    repeats: int
    loadgen: str
    request_timeout_seconds: float
    ready_timeout_seconds: float
    model_directory: str


@dataclass(frozen=True)
class PreparedPayload:
    payload: Payload
    body_path: Path


class ScenarioError(RuntimeError):
    """The scenario could not be measured, for instance because its first request failed."""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preflight(url: str, prepared: PreparedPayload, timeout_seconds: float) -> str:
    """Send one request and insist on a success, so a wrong body fails loudly instead of as 100% errors."""
    try:
        response = httpx.post(
            url,
            content=prepared.payload.body,
            headers={"content-type": prepared.payload.content_type},
            timeout=timeout_seconds,
        )
    except httpx.HTTPError as error:
        raise ScenarioError(f"the first request to {url} failed: {error!r}") from error
    if not 200 <= response.status_code < 300:
        raise ScenarioError(f"the first request to {url} answered {response.status_code}: {response.text[:500]}")
    return response.text[:SAMPLE_RESPONSE_CHARACTERS]


def settle(server: RunningServer) -> None:
    waited = wait_until_idle(server.process_group, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    if waited > 1.0:
        progress(f"  ({server.spec.name} took {waited:.1f} s to work off the requests left queued)")


def measure_once(server: RunningServer, target: LoadTarget, concurrency: int, settings: RunSettings) -> dict:
    """One measured run: the load generator's result plus the server's CPU time over the same window."""
    run_load = LOAD_GENERATORS[settings.loadgen]
    before = snapshot_group(server.process_group)
    load = run_load(target, concurrency, settings.duration_seconds, settings.request_timeout_seconds)
    after = snapshot_group(server.process_group)
    settle(server)
    server_cpu_seconds = after.cpu_seconds - before.cpu_seconds
    return {
        **asdict(load),
        "requests_per_second": load.requests_per_second,
        "server_cpu_seconds": server_cpu_seconds,
        "cpu_ms_per_request": server_cpu_seconds * 1000 / load.requests if load.requests else None,
        "server_cpu_cores": server_cpu_seconds / load.duration_seconds if load.duration_seconds else None,
        "loadgen_cpu_cores": load.loadgen_cpu_seconds / load.duration_seconds if load.duration_seconds else None,
    }


def median_of(repeats: list[dict], key: str) -> float | None:
    values = [repeat[key] for repeat in repeats if repeat[key] is not None]
    return statistics.median(values) if values else None


def summarize_repeats(concurrency: int, repeats: list[dict], images_per_request: int, peak_rss_bytes: int) -> dict:
    requests_per_second = median_of(repeats, "requests_per_second") or 0.0
    return {
        "concurrency": concurrency,
        "requests_per_second": requests_per_second,
        "images_per_second": requests_per_second * images_per_request,
        "latency_ms": {
            percentile: median_of(repeats, f"latency_{percentile}_ms") for percentile in ("p50", "p90", "p99", "max")
        },
        "cpu_ms_per_request": median_of(repeats, "cpu_ms_per_request"),
        "server_cpu_cores": median_of(repeats, "server_cpu_cores"),
        "loadgen_cpu_cores": median_of(repeats, "loadgen_cpu_cores"),
        "requests": sum(repeat["requests"] for repeat in repeats),
        "non_2xx": sum(repeat["non_2xx"] for repeat in repeats),
        "errors": sum(repeat["errors"] for repeat in repeats),
        "peak_rss_mb": peak_rss_bytes / MEGABYTE,
        "repeats": repeats,
    }


def measure_concurrency(
    server: RunningServer, target: LoadTarget, concurrency: int, images_per_request: int, settings: RunSettings
) -> dict:
    run_load = LOAD_GENERATORS[settings.loadgen]
    if settings.warmup_seconds > 0:
        run_load(target, concurrency, settings.warmup_seconds, settings.request_timeout_seconds)
        settle(server)
    repeats = [measure_once(server, target, concurrency, settings) for _ in range(settings.repeats)]
    peak_rss_bytes = snapshot_group(server.process_group).peak_rss_bytes
    return summarize_repeats(concurrency, repeats, images_per_request, peak_rss_bytes)


def scenario_record(scenario: ScenarioSpec, prepared: PreparedPayload) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "server": scenario.server,
        "description": scenario.description,
        "path": scenario.path,
        "payload": scenario.payload,
        "content_type": prepared.payload.content_type,
        "body_bytes": len(prepared.payload.body),
        "images_per_request": prepared.payload.images_per_request,
        "status": "failed",
        "error": None,
        "sample_response": None,
        "runs": [],
    }


def run_scenario(
    server: RunningServer, scenario: ScenarioSpec, prepared: PreparedPayload, settings: RunSettings
) -> dict[str, Any]:
    record = scenario_record(scenario, prepared)
    url = server.base_url + scenario.path
    target = LoadTarget(url, prepared.body_path, prepared.payload.content_type)
    try:
        record["sample_response"] = preflight(url, prepared, settings.request_timeout_seconds)
        for concurrency in settings.concurrency_levels:
            run = measure_concurrency(server, target, concurrency, prepared.payload.images_per_request, settings)
            record["runs"].append(run)
            progress(
                f"  {scenario.name} c={concurrency}: {run['requests_per_second']:,.0f} req/s, "
                f"p50 {run['latency_ms']['p50']:.2f} ms, p99 {run['latency_ms']['p99']:.2f} ms, "
                f"{run['non_2xx'] + run['errors']} errors"
            )
    except (ScenarioError, LoadGeneratorError) as error:
        record["error"] = str(error)
        progress(f"  {scenario.name} failed: {error}")
        return record
    failures = sum(run["non_2xx"] + run["errors"] for run in record["runs"])
    record["status"] = "errors" if failures else "ok"
    return record


def server_record(spec: ServerSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "command": None,
        "ready_url": None,
        "status": "failed",
        "error": None,
        "start_to_ready_seconds": None,
        "peak_rss_mb": None,
        "end_rss_mb": None,
        "log": None,
    }


def run_server(
    spec: ServerSpec,
    scenarios: list[ScenarioSpec],
    payloads: dict[str, PreparedPayload],
    settings: RunSettings,
    *,
    repository_root: Path,
    log_directory: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start one server, run its scenarios, stop it; a server that cannot start fails its scenarios only."""
    record = server_record(spec)
    progress(f"{spec.name}: starting")
    try:
        with running_server(
            spec,
            repository_root=repository_root,
            model_directory=settings.model_directory,
            log_directory=log_directory,
            ready_timeout_seconds=settings.ready_timeout_seconds,
        ) as server:
            record.update(
                command=server.command,
                ready_url=server.base_url + spec.ready_path,
                status="ready",
                start_to_ready_seconds=server.start_to_ready_seconds,
                log=str(server.log_path),
            )
            progress(f"{spec.name}: ready in {server.start_to_ready_seconds:.2f} s at {server.base_url}")
            results = [run_scenario(server, scenario, payloads[scenario.payload], settings) for scenario in scenarios]
            end = snapshot_group(server.process_group)
            record.update(peak_rss_mb=end.peak_rss_bytes / MEGABYTE, end_rss_mb=end.rss_bytes / MEGABYTE)
    except ServerStartError as error:
        record["error"] = str(error)
        progress(f"{spec.name}: could not start: {error}")
        results = []
        for scenario in scenarios:
            failed = scenario_record(scenario, payloads[scenario.payload])
            failed["error"] = f"the {spec.name} server did not start: {str(error).splitlines()[0]}"
            results.append(failed)
    return record, results


def run_benchmark(
    scenarios: list[ScenarioSpec],
    payloads: dict[str, PreparedPayload],
    settings: RunSettings,
    *,
    repository_root: Path,
    log_directory: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every server that has a selected scenario, in catalog order; returns the server and scenario records."""
    server_records, scenario_records = [], []
    for spec in SERVERS.values():
        own_scenarios = [scenario for scenario in scenarios if scenario.server == spec.name]
        if not own_scenarios:
            continue
        record, results = run_server(
            spec, own_scenarios, payloads, settings, repository_root=repository_root, log_directory=log_directory
        )
        server_records.append(record)
        scenario_records.extend(results)
    order = [scenario.name for scenario in scenarios]
    scenario_records.sort(key=lambda record: order.index(record["name"]))
    return server_records, scenario_records
