"""What a load generator is asked to do and what it reports back, whichever generator it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoadTarget:
    url: str
    body_path: Path
    content_type: str
    # Further request headers, such as the binary extension's Inference-Header-Content-Length.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadResult:
    tool: str
    concurrency: int
    # Responses received, whatever their status.
    requests: int
    # Responses whose status was not a success (wrk counts only 4xx and 5xx here).
    non_2xx: int
    # Requests that got no response: connection, read, write errors and timeouts.
    errors: int
    duration_seconds: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    latency_mean_ms: float
    # CPU time the load generator itself used, to show how much of the machine it took from the server.
    loadgen_cpu_seconds: float = 0.0
    # How many responses came back with each status code, when the generator counts them (httpx does, wrk not).
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_seconds if self.duration_seconds > 0 else 0.0


class LoadGeneratorError(RuntimeError):
    """The load generator failed to run or printed no result."""
