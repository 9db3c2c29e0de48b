"""A bounded asyncio load generator on httpx: N workers POST the same body for a fixed time, then stop.

It is the fallback when wrk is not installed, and what the smoke run uses. The harness runs it as its own
process (`python -m bench.loadgen ...`), so it never shares an event loop or a core's time slice with the
harness, and prints one JSON line with the result. Each worker sends its next request when the previous one
has answered; no worker starts a request after the deadline or beyond the total request budget.

Being Python, it is slower than wrk: one core of it tops out around a couple of thousand requests per second,
so against the fastest servers it measures itself as much as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadGeneratorError, LoadResult, LoadTarget
from bench.procstats import run_child

DEFAULT_MAX_REQUESTS = 1_000_000
EXIT_MARGIN_SECONDS = 60


@dataclass
class Tally:
    """What the workers record; one asyncio thread updates it, so it needs no lock."""

    remaining_budget: int
    latencies_seconds: list[float] = field(default_factory=list)
    status_counts: Counter[str] = field(default_factory=Counter)
    non_2xx: int = 0
    errors: int = 0

    def take_one(self) -> bool:
        if self.remaining_budget <= 0:
            return False
        self.remaining_budget -= 1
        return True


async def worker(client: httpx.AsyncClient, target: LoadTarget, body: bytes, deadline: float, tally: Tally) -> None:
    headers = {"content-type": target.content_type, **dict(target.headers)}
    while time.perf_counter() < deadline and tally.take_one():
        started = time.perf_counter()
        try:
            response = await client.post(target.url, content=body, headers=headers)
        except httpx.HTTPError:
            tally.errors += 1
            continue
        tally.latencies_seconds.append(time.perf_counter() - started)
        tally.status_counts[str(response.status_code)] += 1
        if not 200 <= response.status_code < 300:
            tally.non_2xx += 1


def percentile_ms(sorted_seconds: list[float], percent: float) -> float:
    """The nearest-rank percentile, in milliseconds; 0 when nothing was measured."""
    if not sorted_seconds:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(sorted_seconds)))
    return sorted_seconds[rank - 1] * 1000


async def generate_load(
    target: LoadTarget, concurrency: int, duration_seconds: float, max_requests: int, timeout_seconds: float
) -> LoadResult:
    body = target.body_path.read_bytes()
    tally = Tally(remaining_budget=max_requests)
    # One client with one connection per worker: a shared pool costs milliseconds per request at concurrency 64,
    # since every request scans all the pool's connections under one lock.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=timeout_seconds))
            for _ in range(concurrency)
        ]
        started = time.perf_counter()
        deadline = started + duration_seconds
        await asyncio.gather(*(worker(client, target, body, deadline, tally) for client in clients))
        elapsed = time.perf_counter() - started
    latencies = sorted(tally.latencies_seconds)
    return LoadResult(
        tool="httpx",
        concurrency=concurrency,
        requests=len(latencies),
        non_2xx=tally.non_2xx,
        errors=tally.errors,
        duration_seconds=elapsed,
        latency_p50_ms=percentile_ms(latencies, 50),
        latency_p90_ms=percentile_ms(latencies, 90),
        latency_p99_ms=percentile_ms(latencies, 99),
        latency_max_ms=latencies[-1] * 1000 if latencies else 0.0,
        latency_mean_ms=sum(latencies) / len(latencies) * 1000 if latencies else 0.0,
        status_counts=dict(tally.status_counts),
    )


def run_event_loop(coroutine: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run on uvloop when it is installed, which makes the generator itself cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def run_httpx(target: LoadTarget, concurrency: int, duration_seconds: float, timeout_seconds: float) -> LoadResult:
    """Run the generator in a child process and read its result."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        target.url,
        "--body-file",
        str(target.body_path),
        "--content-type",
        target.content_type,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration_seconds),
        "--timeout",
        str(timeout_seconds),
    ]
    child = run_child(command, timeout_seconds=duration_seconds + timeout_seconds + EXIT_MARGIN_SECONDS)
    if child.returncode != 0:
        raise LoadGeneratorError(f"bench.loadgen exited with code {child.returncode}: {child.stderr.strip()}")
    result = LoadResult(**json.loads(child.stdout.strip().splitlines()[-1]))
    return LoadResult(**{**asdict(result), "loadgen_cpu_seconds": child.cpu_seconds})


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to keep starting requests")
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, help="the total request budget")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    target = LoadTarget(options.url, options.body_file, options.content_type)
    result = run_event_loop(
        generate_load(target, options.concurrency, options.duration, options.max_requests, options.timeout)
    )
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
