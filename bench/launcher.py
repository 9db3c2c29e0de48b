"""Start a server in its own process group, wait until its readiness URL answers 200, and always stop it.

The start-to-ready time is measured from the moment the process is spawned until the first 200 from the
readiness URL. The server's output goes to a log file, whose tail is quoted when the server fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.catalog import COMMON_ENVIRONMENT, HOST, ServerSpec

POLL_INTERVAL_SECONDS = 0.05
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 20


class ServerStartError(RuntimeError):
    """The server is missing, exited, or did not become ready in time."""


@dataclass(frozen=True)
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    base_url: str
    grpc_port: int
    command: list[str]
    start_to_ready_seconds: float
    log_path: Path

    @property
    def process_group(self) -> int:
        # The server was started with start_new_session, so it leads a group whose id is its pid.
        return self.process.pid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def fill_template(text: str, values: dict[str, str]) -> str:
    return text.format(**values)


def log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def wait_until_ready(process: subprocess.Popen[bytes], url: str, timeout_seconds: float, started: float) -> float:
    """Poll the readiness URL until it answers 200; return the seconds since `started`."""
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process.poll() is not None:
                raise ServerStartError(f"the server exited with code {process.returncode} before it was ready")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > timeout_seconds:
                raise ServerStartError(f"{url} did not answer 200 within {timeout_seconds:.0f} s")
            time.sleep(POLL_INTERVAL_SECONDS)


def start_server(
    spec: ServerSpec, *, repository_root: Path, model_directory: str, log_directory: Path, ready_timeout_seconds: float
) -> RunningServer:
    if not (repository_root / spec.required_file).is_file():
        raise ServerStartError(f"{spec.required_file} does not exist")
    port, grpc_port = free_port(), free_port()
    values = {"python": sys.executable, "port": str(port), "grpc_port": str(grpc_port), "model_dir": model_directory}
    command = [fill_template(part, values) for part in spec.command]
    environment = {**os.environ, **COMMON_ENVIRONMENT}
    environment.update({name: fill_template(value, values) for name, value in spec.environment.items()})
    log_directory.mkdir(parents=True, exist_ok=True)
    log_path = log_directory / f"{spec.name}.log"
    base_url = f"http://{HOST}:{port}"
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=repository_root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seconds = wait_until_ready(process, base_url + spec.ready_path, ready_timeout_seconds, started)
    except BaseException as error:
        stop_process_group(process)
        if isinstance(error, ServerStartError):
            raise ServerStartError(f"{error}; log {log_path} ends with:\n{log_tail(log_path)}") from None
        raise
    return RunningServer(spec, process, base_url, grpc_port, command, seconds, log_path)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, then SIGKILL it if it has not exited after a grace period."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal_number)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children of the leader may outlive it for a moment; make sure nothing of the group is left.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def running_server(
    spec: ServerSpec, *, repository_root: Path, model_directory: str, log_directory: Path, ready_timeout_seconds: float
) -> Iterator[RunningServer]:
    """A ready server for the `with` block; it is stopped on the way out, on error and on Ctrl-C too."""
    server = start_server(
        spec,
        repository_root=repository_root,
        model_directory=model_directory,
        log_directory=log_directory,
        ready_timeout_seconds=ready_timeout_seconds,
    )
    try:
        yield server
    finally:
        stop_process_group(server.process)
