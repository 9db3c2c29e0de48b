"""Fixtures for the checks that need the running Compose stack: `api` replicas behind the `lb` load balancer.

scripts/docker-test.sh (make docker-test) builds the images, starts the stack with two replicas and runs these
with DIGIT_SERVE_DOCKER_TESTS=1, DIGIT_SERVE_TEST_URL pointing at the load balancer and COMPOSE_PROJECT_NAME
naming the stack. Anywhere else (a plain `pytest`), every test here is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.docker.stack import Compose

DOCKER_TESTS_FOLDER = Path(__file__).resolve().parent
STACK_RUNNING = os.environ.get("DIGIT_SERVE_DOCKER_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STACK_RUNNING:
        return
    skip = pytest.mark.skip(reason="needs the Compose stack: run scripts/docker-test.sh (make docker-test)")
    for item in items:
        if DOCKER_TESTS_FOLDER in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base_url() -> str:
    return os.environ["DIGIT_SERVE_TEST_URL"].rstrip("/")


@pytest.fixture(scope="session")
def compose() -> Compose:
    return Compose(os.environ["COMPOSE_PROJECT_NAME"])


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30.0, limits=httpx.Limits(max_connections=16)) as client:
        yield client


@pytest.fixture
def restore_replicas(compose: Compose) -> Iterator[int]:
    """The number of running replicas before the test; the test may stop some, they are all back after it."""
    replicas = len(compose.running_replicas())
    yield replicas
    compose.scale_api(replicas)
