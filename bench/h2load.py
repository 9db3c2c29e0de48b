"""Drive a gRPC server with h2load (nghttp2's HTTP/2 load generator, Debian's nghttp2-client), for unary calls.

A unary gRPC call is an HTTP/2 POST to /<service>/<method> with `content-type: application/grpc`, `te: trailers`
and a body of one length-prefixed message (a zero byte, the length as 4 bytes big-endian, the serialized message):
h2load sends exactly that, the same body on every request, from C, as wrk does for HTTP/1.1. It is the gRPC load
generator here because ghz cannot be installed (no Go module proxy). The call's own status travels in the
trailers (grpc-status), which h2load does not read: the harness checks the body once with a real gRPC call before
measuring (bench/runner.py), and a server that failed calls during the run would show as far fewer requests.

Latency percentiles come from h2load's per-request log (--log-file: start, status, microseconds to the end of
the response), read after the run.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.load import LoadGeneratorError, LoadResult, LoadTarget
from bench.procstats import run_child

EXIT_MARGIN_SECONDS = 60
GRPC_HEADERS = (("content-type", "application/grpc"), ("te", "trailers"))


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """One gRPC message as it travels in an HTTP/2 body: uncompressed, with its 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_command(target: LoadTarget, concurrency: int, duration_seconds: float, log_path: Path) -> list[str]:
    headers = [f"{name}: {value}" for name, value in (*GRPC_HEADERS, *target.headers)]
    return [
        "h2load",
        f"--clients={concurrency}",
        f"--threads={1 if concurrency == 1 else 2}",
        "--max-concurrent-streams=1",  # one call at a time per connection, as wrk's connections do
        f"--duration={max(1, math.ceil(duration_seconds))}",
        f"--data={target.body_path}",
        f"--log-file={log_path}",
        *(argument for header in headers for argument in ("-H", header)),
        target.url,
    ]


def parse_h2load(stdout: str, log_text: str, *, concurrency: int, cpu_seconds: float) -> LoadResult:
    finished = re.search(r"finished in ([\d.]+)s", stdout)
    counts = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", stdout
    )
    if not finished or not counts:
        raise LoadGeneratorError(f"h2load printed no summary; its output was:\n{stdout}")
    # h2load's "failed" includes the "errored" (no response at all); the rest of them had a non-2xx status.
    done, _succeeded, failed, errored = (int(counts.group(index)) for index in (2, 3, 4, 5))
    latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log_text.splitlines() if line.count("\t") >= 2)
    if not latencies:
        latencies = [0.0]

    def percentile(percent: float) -> float:
        return latencies[min(len(latencies) - 1, math.ceil(percent / 100 * len(latencies)) - 1)]

    return LoadResult(
        tool="h2load",
        concurrency=concurrency,
        requests=done,
        non_2xx=failed - errored,
        errors=errored,
        duration_seconds=float(finished.group(1)),
        latency_p50_ms=percentile(50),
        latency_p90_ms=percentile(90),
        latency_p99_ms=percentile(99),
        latency_max_ms=latencies[-1],
        latency_mean_ms=statistics.fmean(latencies),
        loadgen_cpu_seconds=cpu_seconds,
    )


def run_h2load(target: LoadTarget, concurrency: int, duration_seconds: float, timeout_seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="h2load-") as folder:
        log_path = Path(folder) / "requests.log"
        command = h2load_command(target, concurrency, duration_seconds, log_path)
        child = run_child(command, timeout_seconds=duration_seconds + timeout_seconds + EXIT_MARGIN_SECONDS)
        if child.returncode != 0:
            raise LoadGeneratorError(
                f"h2load exited with code {child.returncode}: {child.stderr.strip() or child.stdout}"
            )
        log_text = log_path.read_text() if log_path.exists() else ""
    return parse_h2load(child.stdout, log_text, concurrency=concurrency, cpu_seconds=child.cpu_seconds)
