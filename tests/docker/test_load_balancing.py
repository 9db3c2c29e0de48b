"""The load balancer spreads requests over every running `api` replica, and X-Served-By shows which one answered."""

from __future__ import annotations

from collections import Counter

import httpx

from tests.docker.stack import Compose, replica_hostname, report

REQUESTS = 60


def test_load_balancer_requests_reach_every_replica(client: httpx.Client, compose: Compose) -> None:
    replicas = {replica_hostname(container) for container in compose.running_replicas()}
    assert len(replicas) >= 2, f"the stack should run at least two api replicas, runs {sorted(replicas)}"

    served_by: Counter[str] = Counter()
    for _ in range(REQUESTS):
        response = client.get("/health/ready")
        assert response.status_code == 200, response.text
        served_by[response.headers["X-Served-By"]] += 1

    report(f"load balancing: {REQUESTS} requests over {len(replicas)} replicas: {dict(served_by)}")
    assert set(served_by) == replicas
    assert min(served_by.values()) >= REQUESTS / len(replicas) / 4, f"unbalanced: {dict(served_by)}"


def test_load_balancer_unknown_path_answers_error_envelope_from_a_replica(client: httpx.Client) -> None:
    response = client.get("/no-such-path")

    assert response.status_code == 404
    assert "X-Served-By" in response.headers
    assert response.json()["error"]["code"] == "not_found"
