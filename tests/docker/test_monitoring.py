"""The `monitoring` profile: Prometheus scrapes every api replica, and sees the traffic the test sends."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.docker.stack import Compose, predict_request, report

REQUESTS = 40
SCRAPE_WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def prometheus() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=os.environ["DIGIT_SERVE_PROMETHEUS_URL"], timeout=10) as client:
        yield client


def query(prometheus: httpx.Client, promql: str) -> list[dict[str, Any]]:
    response = prometheus.get("/api/v1/query", params={"query": promql})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} within {SCRAPE_WAIT_SECONDS} s")


def native_total(prometheus: httpx.Client) -> float:
    result = query(prometheus, 'sum(digit_serve_requests_total{protocol="native",code="200"})')
    return float(result[0]["value"][1]) if result else 0.0


def settled_total(prometheus: httpx.Client) -> float:
    """The count once earlier tests' traffic has all been scraped: unchanged over two scrape intervals (5 s)."""
    previous = native_total(prometheus)
    deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(11)
        current = native_total(prometheus)
        if current == previous:
            return current
        previous = current
    raise AssertionError("the request count never settled")


def test_prometheus_scrapes_every_replica_and_counts_the_traffic(
    prometheus: httpx.Client, client: httpx.Client, compose: Compose
) -> None:
    replicas = len(compose.running_replicas())

    def up_targets() -> list[dict[str, Any]]:
        targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        up = [target for target in targets if target["health"] == "up"]
        return up if len(up) == replicas else []

    up = until(up_targets, f"{replicas} replicas up as targets")
    before = settled_total(prometheus)
    for _ in range(REQUESTS):
        assert client.post("/predict", **predict_request()).status_code == 200
    counted = until(lambda: native_total(prometheus) - before >= REQUESTS and native_total(prometheus), "the traffic")
    rate = query(prometheus, 'sum(rate(digit_serve_requests_total{protocol="native"}[1m]))')
    report(
        f"monitoring: {len(up)} of {replicas} replicas up as Prometheus targets; {REQUESTS} predictions sent, "
        f"counted {counted - before:.0f}; rate over 1 min {float(rate[0]['value'][1]):.2f} req/s"
    )
    assert counted - before == REQUESTS
    assert float(rate[0]["value"][1]) > 0
