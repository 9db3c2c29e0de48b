"""Driving the Compose stack from tests: `docker compose` for the project under test, and `docker` itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_SECONDS = 300


class Compose:
    """`docker compose` on the stack under test: the project named by COMPOSE_PROJECT_NAME, or another one."""

    def __init__(self, project: str, extra_environment: dict[str, str] | None = None) -> None:
        self.project = project
        self.environment = os.environ | {"COMPOSE_PROJECT_NAME": project} | (extra_environment or {})

    def run(
        self, *arguments: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            ["docker", "compose", *arguments],
            cwd=REPOSITORY_ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(arguments)} exited {completed.returncode}:\n{completed.stderr}"
            )
        return completed

    def running_replicas(self) -> list[str]:
        """The ids of the running `api` containers."""
        output = self.run("ps", "--quiet", "--status", "running", "api").stdout
        return output.split()

    def scale_api(self, replicas: int) -> None:
        """Start or stop `api` containers until `replicas` run, and return once all are healthy."""
        self.run("up", "--detach", "--wait", "--no-build", "--scale", f"api={replicas}")


def docker(*arguments: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert completed.returncode == 0, f"docker {' '.join(arguments)} exited {completed.returncode}:\n{completed.stderr}"
    return completed


def replica_hostname(container_id: str) -> str:
    """What a replica answers in X-Served-By by default: its hostname, which Docker sets to the short container id."""
    return docker("inspect", "--format", "{{.Config.Hostname}}", container_id).stdout.strip()


def report(line: str) -> None:
    """A measurement for docker-test's closing summary (the file DIGIT_SERVE_DOCKER_REPORT names), and for -s."""
    print(f"\n{line}")
    path = os.environ.get("DIGIT_SERVE_DOCKER_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")


def predict_request() -> dict[str, object]:
    """Keyword arguments for `client.post("/predict", ...)`: one 28x28 digit (a rough 7) as JSON pixels."""
    image = [[0] * 28 for _ in range(28)]
    for column in range(7, 21):
        image[6][column] = image[7][column] = 255  # the bar
    for row in range(8, 23):
        column = 20 - (row - 8) // 2
        image[row][column] = image[row][column - 1] = 255  # the stroke down
    return {"json": {"image": image}}
