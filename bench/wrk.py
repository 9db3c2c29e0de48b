"""Drive a server with wrk and a Lua script that POSTs a body file and prints its summary as JSON.

wrk runs one thread at concurrency 1 and two otherwise. On a two-core machine wrk competes with the server for
CPU, so the server gets less than the whole machine; the CPU each side used is recorded to show by how much.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from bench.load import LoadGeneratorError, LoadResult, LoadTarget
from bench.procstats import run_child

POST_SCRIPT = Path(__file__).parent / "lua" / "post.lua"
RESULT_MARKER = "BENCH_RESULT "
# Seconds wrk waits beyond the run for its threads to finish before the harness gives up on it.
EXIT_MARGIN_SECONDS = 60


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_threads(concurrency: int) -> int:
    return 1 if concurrency == 1 else 2


def wrk_command(target: LoadTarget, concurrency: int, duration_seconds: float, timeout_seconds: float) -> list[str]:
    # wrk takes whole seconds only.
    duration = max(1, math.ceil(duration_seconds))
    timeout = max(1, math.ceil(timeout_seconds))
    return [
        "wrk",
        f"-t{wrk_threads(concurrency)}",
        f"-c{concurrency}",
        f"-d{duration}s",
        f"--timeout={timeout}s",
        "-s",
        str(POST_SCRIPT),
        target.url,
        "--",
        str(target.body_path),
        target.content_type,
        *(f"{name}: {value}" for name, value in target.headers),
    ]


def parse_wrk_output(stdout: str, *, concurrency: int, cpu_seconds: float) -> LoadResult:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        raise LoadGeneratorError(f"wrk printed no {RESULT_MARKER.strip()} line; its output was:\n{stdout}")
    report = json.loads(lines[-1][len(RESULT_MARKER) :])
    errors, latency = report["errors"], report["latency_us"]
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        requests=report["requests"],
        non_2xx=errors["status"],
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        duration_seconds=report["duration_us"] / 1e6,
        latency_p50_ms=latency["p50"] / 1000,
        latency_p90_ms=latency["p90"] / 1000,
        latency_p99_ms=latency["p99"] / 1000,
        latency_max_ms=latency["max"] / 1000,
        latency_mean_ms=latency["mean"] / 1000,
        loadgen_cpu_seconds=cpu_seconds,
    )


def run_wrk(target: LoadTarget, concurrency: int, duration_seconds: float, timeout_seconds: float) -> LoadResult:
    command = wrk_command(target, concurrency, duration_seconds, timeout_seconds)
    child = run_child(command, timeout_seconds=duration_seconds + timeout_seconds + EXIT_MARGIN_SECONDS)
    if child.returncode != 0:
        raise LoadGeneratorError(f"wrk exited with code {child.returncode}: {child.stderr.strip() or child.stdout}")
    return parse_wrk_output(child.stdout, concurrency=concurrency, cpu_seconds=child.cpu_seconds)
