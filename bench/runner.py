"""Run the selected scenarios side by side: start every server first, then interleave the measurements.

Servers are started one at a time, so each start-to-ready time is measured on a quiet machine, and then all of
them stay up (idle servers use no CPU). The measurements go concurrency level by level, repeat by repeat, and
within a repeat scenario by scenario, each one a warm-up and then a measured run. On a shared machine whatever
else is running then slows every scenario alike, and the ratios between them stay meaningful. A scenario with
concurrency levels of its own runs only at those; the others run at the run's levels.
The results are plain JSON-ready dictionaries; bench/README.md describes their fields.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.catalog import HOST, ScenarioSpec, ServerSpec, all_levels, scenario_levels
from bench.h2load import run_h2load
from bench.launcher import RunningServer, ServerStartError, running_server
from bench.load import LoadGeneratorError, LoadResult, LoadTarget
from bench.loadgen import run_httpx
from bench.payloads import Payload
from bench.procstats import machine_busy_seconds, snapshot_group, wait_until_idle
from bench.wrk import run_wrk

LoadGenerator = Callable[[LoadTarget, int, float, float], LoadResult]
LOAD_GENERATORS: dict[str, LoadGenerator] = {"wrk": run_wrk, "httpx": run_httpx}
MEGABYTE = 1024 * 1024
SAMPLE_RESPONSE_CHARACTERS = 300
# The longest the harness waits for a server to work off what a stopped load generator left queued.
SETTLE_TIMEOUT_SECONDS = 120.0


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


@dataclass
class ScenarioRun:
    """A scenario bound to its running server, and what has been measured of it so far."""

    spec: ScenarioSpec
    server: RunningServer
    target: LoadTarget
    images_per_request: int
    record: dict[str, Any]


class ScenarioError(RuntimeError):
    """The scenario could not be measured, for instance because its first request failed."""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preflight(url: str, prepared: PreparedPayload, timeout_seconds: float) -> str:
    """Send one request and insist on a success, so a wrong body fails loudly instead of as 100% errors."""
    if prepared.payload.content_type == "application/grpc":
        return grpc_preflight(url, prepared, timeout_seconds)
    try:
        response = httpx.post(
            url,
            content=prepared.payload.body,
            headers={"content-type": prepared.payload.content_type, **dict(prepared.payload.headers)},
            timeout=timeout_seconds,
        )
    except httpx.HTTPError as error:
        raise ScenarioError(f"the first request to {url} failed: {error!r}") from error
    if not 200 <= response.status_code < 300:
        raise ScenarioError(f"the first request to {url} answered {response.status_code}: {response.text[:500]}")
    return response.text[:SAMPLE_RESPONSE_CHARACTERS]


def grpc_preflight(url: str, prepared: PreparedPayload, timeout_seconds: float) -> str:
    """One real gRPC call with the scenario's message (h2load cannot see a call's grpc-status): it must succeed."""
    import grpc

    address, _, method = url.removeprefix("http://").partition("/")
    message = prepared.payload.body[5:]  # the body is the message behind its 5-byte gRPC frame header
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{method}")
        try:
            answer = call(message, timeout=timeout_seconds)
        except grpc.RpcError as error:
            raise ScenarioError(f"the first call to {url} failed: {error.code()} {error.details()}") from error
    return f"{len(answer)} bytes: {answer[:SAMPLE_RESPONSE_CHARACTERS]!r}"


def settle(server: RunningServer) -> None:
    waited = wait_until_idle(server.process_group, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    if waited > 1.0:
        progress(f"    ({server.spec.name} took {waited:.1f} s to work off the requests left queued)")


def measure_once(run: ScenarioRun, concurrency: int, settings: RunSettings) -> dict[str, Any]:
    """A warm-up, then one measured run: the load generator's result and the server's CPU time meanwhile."""
    # gRPC needs an HTTP/2 generator, whatever --loadgen says.
    run_load = run_h2load if run.spec.transport == "grpc" else LOAD_GENERATORS[settings.loadgen]
    group = run.server.process_group
    if settings.warmup_seconds > 0:
        run_load(run.target, concurrency, settings.warmup_seconds, settings.request_timeout_seconds)
        settle(run.server)
    before, machine_before = snapshot_group(group), machine_busy_seconds()
    started = time.perf_counter()
    load = run_load(run.target, concurrency, settings.duration_seconds, settings.request_timeout_seconds)
    window_seconds = time.perf_counter() - started
    after, machine_after = snapshot_group(group), machine_busy_seconds()
    settle(run.server)
    server_cpu_seconds = after.cpu_seconds - before.cpu_seconds
    successful = load.requests - load.non_2xx
    # Whatever else ran on the machine meanwhile: other tenants, and the harness itself.
    other_cpu_seconds = (machine_after - machine_before) - server_cpu_seconds - load.loadgen_cpu_seconds
    return {
        **asdict(load),
        "requests_per_second": load.requests_per_second,
        # Goodput: only successful responses count, so a server that refuses fast does not look fast.
        "goodput_images_per_second": successful / load.duration_seconds * run.images_per_request
        if load.duration_seconds > 0
        else 0.0,
        "server_cpu_seconds": server_cpu_seconds,
        "cpu_ms_per_request": server_cpu_seconds * 1000 / load.requests if load.requests else None,
        "server_cpu_cores": server_cpu_seconds / window_seconds,
        "loadgen_cpu_cores": load.loadgen_cpu_seconds / window_seconds,
        "other_cpu_cores": max(0.0, other_cpu_seconds) / window_seconds,
        "server_peak_rss_mb": after.peak_rss_bytes / MEGABYTE,
    }


def median_of(repeats: list[dict[str, Any]], key: str) -> float | None:
    values = [repeat[key] for repeat in repeats if repeat[key] is not None]
    return statistics.median(values) if values else None


def summed_status_counts(repeats: list[dict[str, Any]]) -> dict[str, int]:
    """Responses per status code over the repeats; empty when the generator does not count them (wrk)."""
    totals: dict[str, int] = {}
    for repeat in repeats:
        for status, count in repeat.get("status_counts", {}).items():
            totals[status] = totals.get(status, 0) + count
    return dict(sorted(totals.items()))


def summarize_repeats(concurrency: int, repeats: list[dict[str, Any]], images_per_request: int) -> dict[str, Any]:
    requests_per_second = median_of(repeats, "requests_per_second") or 0.0
    return {
        "concurrency": concurrency,
        "requests_per_second": requests_per_second,
        "images_per_second": requests_per_second * images_per_request,
        "goodput_images_per_second": median_of(repeats, "goodput_images_per_second") or 0.0,
        "latency_ms": {
            percentile: median_of(repeats, f"latency_{percentile}_ms") for percentile in ("p50", "p90", "p99", "max")
        },
        "cpu_ms_per_request": median_of(repeats, "cpu_ms_per_request"),
        "server_cpu_cores": median_of(repeats, "server_cpu_cores"),
        "loadgen_cpu_cores": median_of(repeats, "loadgen_cpu_cores"),
        "other_cpu_cores": median_of(repeats, "other_cpu_cores"),
        "requests": sum(repeat["requests"] for repeat in repeats),
        "non_2xx": sum(repeat["non_2xx"] for repeat in repeats),
        "errors": sum(repeat["errors"] for repeat in repeats),
        "status_counts": summed_status_counts(repeats),
        "peak_rss_mb": max(repeat["server_peak_rss_mb"] for repeat in repeats),
        "repeats": repeats,
    }


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
        "concurrency_levels": list(scenario.concurrency_levels) if scenario.concurrency_levels else None,
        "refusals_expected": scenario.refusals_expected,
        "status": "failed",
        "error": None,
        "sample_response": None,
        "runs": [],
    }


def server_record(spec: ServerSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "repository_root": None,
        "command": None,
        "ready_url": None,
        "status": "failed",
        "error": None,
        "start_to_ready_seconds": None,
        "peak_rss_mb": None,
        "end_rss_mb": None,
        "log": None,
    }


def start_servers(
    stack: ExitStack, specs: list[ServerSpec], settings: RunSettings, *, repository_root: Path, log_directory: Path
) -> tuple[dict[str, RunningServer], dict[str, dict[str, Any]]]:
    """Start the servers one after another; the stack stops them all, whatever happens later.

    Each runs in its own repository root when it has one (a baseline twin's worktree), else in the harness's.
    """
    running, records = {}, {}
    for spec in specs:
        name = spec.name
        record = records[name] = server_record(spec)
        root = spec.repository_root or repository_root
        record["repository_root"] = str(root)
        progress(f"{name}: starting")
        try:
            server = stack.enter_context(
                running_server(
                    spec,
                    repository_root=root,
                    model_directory=settings.model_directory,
                    log_directory=log_directory,
                    ready_timeout_seconds=settings.ready_timeout_seconds,
                )
            )
        except ServerStartError as error:
            record["error"] = str(error)
            progress(f"{name}: could not start: {error}")
            continue
        running[name] = server
        record.update(
            command=server.command,
            ready_url=server.base_url + spec.ready_path,
            status="ready",
            start_to_ready_seconds=server.start_to_ready_seconds,
            log=str(server.log_path),
        )
        progress(f"{name}: ready in {server.start_to_ready_seconds:.2f} s at {server.base_url}")
    return running, records


def prepare_scenarios(
    scenarios: list[ScenarioSpec],
    payloads: dict[str, PreparedPayload],
    running: dict[str, RunningServer],
    server_records: dict[str, dict[str, Any]],
    settings: RunSettings,
) -> tuple[list[dict[str, Any]], list[ScenarioRun]]:
    """A record for every scenario, and the runnable ones: those whose server started and whose first request
    succeeded."""
    records, runnable = [], []
    for scenario in scenarios:
        prepared = payloads[scenario.payload]
        record = scenario_record(scenario, prepared)
        records.append(record)
        server = running.get(scenario.server)
        if server is None:
            first_line = (server_records[scenario.server]["error"] or "").splitlines()[0]
            record["error"] = f"the {scenario.server} server did not start: {first_line}"
            continue
        url = (f"http://{HOST}:{server.grpc_port}" if scenario.transport == "grpc" else server.base_url) + scenario.path
        try:
            record["sample_response"] = preflight(url, prepared, settings.request_timeout_seconds)
        except ScenarioError as error:
            record["error"] = str(error)
            progress(f"  {scenario.name} failed: {error}")
            continue
        target = LoadTarget(url, prepared.body_path, prepared.payload.content_type, prepared.payload.headers)
        runnable.append(ScenarioRun(scenario, server, target, prepared.payload.images_per_request, record))
    return records, runnable


def measure_level(runs: list[ScenarioRun], concurrency: int, settings: RunSettings) -> list[ScenarioRun]:
    """Every scenario at one concurrency, repeats interleaved; returns the scenarios still runnable."""
    repeats: dict[str, list[dict[str, Any]]] = {run.spec.name: [] for run in runs}
    failed: set[str] = set()
    for repeat in range(settings.repeats):
        # Every other repeat goes backwards, so that no scenario always follows the same neighbour (a baseline
        # twin would otherwise always run right after its original).
        for run in runs if repeat % 2 == 0 else runs[::-1]:
            if run.spec.name in failed:
                continue
            try:
                measured = measure_once(run, concurrency, settings)
            except LoadGeneratorError as error:
                run.record["error"] = str(error)
                progress(f"  {run.spec.name} c={concurrency} failed: {error}")
                failed.add(run.spec.name)
                continue
            repeats[run.spec.name].append(measured)
            progress(
                f"  c={concurrency} repeat {repeat + 1}/{settings.repeats} {run.spec.name}: "
                f"{measured['requests_per_second']:,.0f} req/s, "
                f"goodput {measured['goodput_images_per_second']:,.0f} images/s, "
                f"p50 {measured['latency_p50_ms']:.2f} ms, "
                f"p99 {measured['latency_p99_ms']:.2f} ms, {measured['non_2xx']} non-2xx, {measured['errors']} errors"
            )
    for run in runs:
        if run.spec.name not in failed:
            run.record["runs"].append(summarize_repeats(concurrency, repeats[run.spec.name], run.images_per_request))
    return [run for run in runs if run.spec.name not in failed]


def unexpected_failures(level: dict[str, Any], refusals_expected: bool) -> int:
    """The failures that flag a scenario at one level: every non-2xx response and connection error, except, where
    refusals are expected, the refusals (503s when the generator counts statuses, every non-2xx under wrk)."""
    if not refusals_expected:
        return level["non_2xx"] + level["errors"]
    counts = level.get("status_counts") or {}
    other_statuses = level["non_2xx"] - counts.get("503", 0) if counts else 0
    return other_statuses + level["errors"]


def measure_levels(runnable: list[ScenarioRun], settings: RunSettings) -> None:
    """Go through the union of the levels in ascending order; at each, measure the scenarios that run at it."""
    levels = all_levels([run.spec for run in runnable], settings.concurrency_levels)
    for concurrency in levels:
        here = [run for run in runnable if concurrency in scenario_levels(run.spec, settings.concurrency_levels)]
        still_runnable = {run.spec.name for run in measure_level(here, concurrency, settings)}
        dropped = {run.spec.name for run in here} - still_runnable
        runnable = [run for run in runnable if run.spec.name not in dropped]


def run_benchmark(
    scenarios: list[ScenarioSpec],
    payloads: dict[str, PreparedPayload],
    settings: RunSettings,
    *,
    servers: dict[str, ServerSpec],
    repository_root: Path,
    log_directory: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure the scenarios on the servers they name (started in the mapping's order); returns the server
    records and the scenario records, in the given orders."""
    needed = [spec for name, spec in servers.items() if any(scenario.server == name for scenario in scenarios)]
    with ExitStack() as stack:
        running, server_records = start_servers(
            stack, needed, settings, repository_root=repository_root, log_directory=log_directory
        )
        scenario_records, runnable = prepare_scenarios(scenarios, payloads, running, server_records, settings)
        measure_levels(runnable, settings)
        for run in runnable:
            failures = sum(unexpected_failures(level, run.spec.refusals_expected) for level in run.record["runs"])
            if run.record["error"] is None:
                run.record["status"] = "errors" if failures else "ok"
        for name, server in running.items():
            end = snapshot_group(server.process_group)
            # The group's summed peak drops if a short-lived member exits, so keep the highest one seen.
            own_runs = [run for run in runnable if run.spec.server == name]
            seen = [level["peak_rss_mb"] for run in own_runs for level in run.record["runs"]]
            peak_rss_mb = max([end.peak_rss_bytes / MEGABYTE, *seen])
            server_records[name].update(peak_rss_mb=peak_rss_mb, end_rss_mb=end.rss_bytes / MEGABYTE)
    return list(server_records.values()), scenario_records
