"""An `api` container without a model exits with one clear log line, and Compose calls it unhealthy.

Two ways to have no model: an empty models folder, and a model folder (models/mnist_convnet/) without versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.stack import Compose, report

MODEL_DIR_IN_CONTAINER = "/models/mnist_convnet"


@pytest.fixture(params=["empty-models-folder", "model-without-versions"])
def empty_models_stack(request: pytest.FixtureRequest, tmp_path: Path, compose: Compose) -> Iterator[Compose]:
    """A second Compose project whose `api` mounts a host folder without any model version on /models."""
    models = tmp_path / "models"
    models.mkdir(mode=0o755)
    if request.param == "model-without-versions":
        (models / "mnist_convnet").mkdir(mode=0o755)
    stack = Compose(f"{compose.project}-{request.param}", {"DIGIT_SERVE_MODELS": str(models)})
    yield stack
    stack.run("down", "--volumes", "--remove-orphans", check=False)


def test_api_with_empty_models_folder_exits_and_is_reported_unhealthy(empty_models_stack: Compose) -> None:
    started = empty_models_stack.run(
        "up", "--detach", "--wait", "--wait-timeout", "120", "--no-build", "api", check=False
    )
    printed = empty_models_stack.run("logs", "--no-log-prefix", "api")
    logs = printed.stdout + printed.stderr
    state = empty_models_stack.run("ps", "--all", "--format", "{{.State}} {{.Status}}", "api").stdout.strip()

    log_lines = [line for line in logs.splitlines() if MODEL_DIR_IN_CONTAINER in line]
    compose_said = started.stderr.strip().splitlines()[-1:]
    report(
        f"no model ({empty_models_stack.project}): `up --wait` exited {started.returncode} ({compose_said}); "
        f"container {state}; log line: {log_lines[:1]}"
    )
    assert started.returncode != 0
    assert "unhealthy" in started.stderr or "exited" in started.stderr
    assert MODEL_DIR_IN_CONTAINER in logs
