"""An `api` container started on an empty models folder exits with one clear log line, and Compose calls it unhealthy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.stack import Compose, report

MODEL_DIR_IN_CONTAINER = "/app/models/mnist_convnet"


@pytest.fixture
def empty_models_stack(tmp_path: Path, compose: Compose) -> Iterator[Compose]:
    """A second Compose project whose `api` mounts an empty host folder on /app/models."""
    empty_folder = tmp_path / "models"
    empty_folder.mkdir()
    empty_folder.chmod(0o755)
    stack = Compose(f"{compose.project}-empty-models", {"DIGIT_SERVE_MODELS": str(empty_folder)})
    yield stack
    stack.run("down", "--volumes", "--remove-orphans", check=False)


def test_api_with_empty_models_folder_exits_and_is_reported_unhealthy(empty_models_stack: Compose) -> None:
    started = empty_models_stack.run("up", "--detach", "--wait", "--wait-timeout", "120", "--no-build", "api", check=False)
    printed = empty_models_stack.run("logs", "--no-log-prefix", "api")
    logs = printed.stdout + printed.stderr
    state = empty_models_stack.run("ps", "--all", "--format", "{{.State}} {{.Status}}", "api").stdout.strip()

    log_lines = [line for line in logs.splitlines() if MODEL_DIR_IN_CONTAINER in line]
    report(
        f"empty models folder: `up --wait` exited {started.returncode} ({started.stderr.strip().splitlines()[-1:]}); "
        f"container {state}; log line: {log_lines[:1]}"
    )
    assert started.returncode != 0
    assert "unhealthy" in started.stderr or "exited" in started.stderr
    assert MODEL_DIR_IN_CONTAINER in logs
