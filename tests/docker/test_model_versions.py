"""The trainer writes a new model version into the shared `models` volume; the replicas serve it after a restart."""

from __future__ import annotations

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


def test_trained_version_served_after_api_restart(client: httpx.Client, compose: Compose) -> None:
    replicas = len(compose.running_replicas())
    before = served_versions(client, replicas)
    assert len(set(before.values())) == 1, f"replicas disagree before training: {before}"
    old_version = next(iter(before.values()))

    compose.run("run", "--rm", "trainer", *TINY_TRAINING, timeout=TRAINING_TIMEOUT_SECONDS)
    still_served = served_versions(client, replicas)
    compose.run("restart", "api")
    compose.scale_api(replicas)
    after = served_versions(client, replicas)

    report(
        f"new model version: served {old_version} before training, {sorted(set(after.values()))} after an api restart"
    )
    assert set(still_served.values()) == {old_version}, "a running replica must keep its model until restarted"
    assert len(after) == replicas
    assert set(after.values()) == {old_version + 1}
