"""A real server for the integration tests: `python -m service` in a subprocess on a free port, talked to with
httpx. With DIGIT_SERVE_TEST_URL set (e.g. the compose stack's load balancer), the same tests run against that
URL instead, and the tests that need to start their own process are skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import COMMITTED_MODEL, REPOSITORY_ROOT, quiet_tensorflow_environment

EXTERNAL_URL = os.environ.get("DIGIT_SERVE_TEST_URL")
# The gRPC address of that external server (host:port), if the gRPC tests should run against it too.
EXTERNAL_GRPC = os.environ.get("DIGIT_SERVE_TEST_GRPC")
local_only = pytest.mark.skipif(EXTERNAL_URL is not None, reason="starts its own server process")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(model_dir: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    """One model folder of a repository (--model-dir), as the service served before it served repositories."""
    return start_service(log_path, "--model-dir", str(model_dir), *extra, env=env)


def start_service(log_path: Path, *arguments: str, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    grpc = [] if "--grpc-port" in arguments else ["--grpc-port", "0"]  # servers run side by side: no fixed port
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), *grpc, *arguments]
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, cwd=REPOSITORY_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
            env=quiet_tensorflow_environment() | (env or {}),
        )  # fmt: skip
    return ServerProcess(process, f"http://127.0.0.1:{port}", log_path)


def wait_until_ready(server: ServerProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"the server was not ready within {timeout} s:\n{server.log()}")


@contextmanager
def ready(server: ServerProcess) -> Iterator[ServerProcess]:
    """The server once it answers ready; stopped when the block ends, however it ends."""
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Served:
    url: str
    grpc_target: str | None  # host:port of its gRPC server


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The committed default model, served by a real process over HTTP and gRPC (or the external URL)."""
    if EXTERNAL_URL:
        yield Served(EXTERNAL_URL.rstrip("/"), EXTERNAL_GRPC)
        return
    grpc_port = free_port()
    server = start_server(
        COMMITTED_MODEL, tmp_path_factory.mktemp("server") / "server.log", "--grpc-port", str(grpc_port)
    )
    try:
        wait_until_ready(server)
        yield Served(server.url, f"127.0.0.1:{grpc_port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def base_url(served: Served) -> str:
    return served.url


@pytest.fixture(scope="session")
def grpc_target(served: Served) -> str:
    if served.grpc_target is None:
        pytest.skip("no gRPC address for the external server (set DIGIT_SERVE_TEST_GRPC)")
    return served.grpc_target


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http
