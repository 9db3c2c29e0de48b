"""The trainer writes a new model version into the shared `models` volume; the running replicas serve it, no restart."""

from __future__ import annotations

import time

import httpx

from tests.docker.stack import Compose, report

# A smoke-sized training run: one epoch of the seed recipe on 2,000 images is enough to export a valid version.
TINY_TRAINING = ["--recipe", "seed", "--epochs", "1", "--limit-train", "2000", "--limit-test", "500", "--quiet"]
TRAINING_TIMEOUT_SECONDS = 600


def served_versions(client: httpx.Client, replicas: int) -> dict[str, int]:
    """The model version each replica reports, asking through the load balancer until every replica answered."""
    versions: dict[str, int] = {}
    for _ in range(20 * replicas):
        response = client.get("/model/summary")
        assert response.status_code == 200, response.text
        versions[response.headers["X-Served-By"]] = response.json()["model"]["version"]
        if len(versions) == replicas:
            break
    return versions


def test_trained_version_served_by_the_running_replicas(client: httpx.Client, compose: Compose) -> None:
    replicas = len(compose.running_replicas())
    before = served_versions(client, replicas)
    assert len(set(before.values())) == 1, f"replicas disagree before training: {before}"
    old_version = next(iter(before.values()))
    containers = set(compose.running_replicas())

    compose.run("run", "--rm", "trainer", *TINY_TRAINING, timeout=TRAINING_TIMEOUT_SECONDS)
    trained = time.monotonic()
    after = served_versions(client, replicas)
    while set(after.values()) != {old_version + 1} and time.monotonic() - trained < 90:
        time.sleep(0.5)
        after = served_versions(client, replicas)
    switched = time.monotonic() - trained

    report(
        f"new model version: served {old_version} before training, {sorted(set(after.values()))} "
        f"{switched:.1f} s after the trainer exited, by the same {replicas} replicas (no restart)"
    )
    assert len(after) == replicas
    assert set(after.values()) == {old_version + 1}
    assert set(compose.running_replicas()) == containers, "the replicas were not restarted or replaced"
