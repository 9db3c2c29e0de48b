"""Schemathesis against the real server's /openapi.json: every operation, its default checks (no 5xx, documented
status codes and content types, responses that match the documented schemas, invalid requests refused, valid ones
accepted), for a bounded time. The allowances are in tests/fuzz/schemathesis.toml, each with its reason.

DIGIT_SERVE_FUZZ_SECONDS sets the time budget (default 60; the README quotes a longer run) and
DIGIT_SERVE_FUZZ_SEED the seed (fixed by default, so that CI is repeatable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY_ROOT
from tests.integration.conftest import local_only

CONFIG = REPOSITORY_ROOT / "tests" / "fuzz" / "schemathesis.toml"
SECONDS = os.environ.get("DIGIT_SERVE_FUZZ_SECONDS", "60")
SEED = os.environ.get("DIGIT_SERVE_FUZZ_SEED", "20261202")


def schemathesis_command() -> list[str]:
    executable = Path(sys.executable).with_name("schemathesis")
    return [str(executable)] if executable.exists() else [shutil.which("schemathesis") or "schemathesis"]


@local_only  # through the compose stack nginx's own pages would be judged too
@pytest.mark.slow
def test_schema_fuzz_finds_no_failure(base_url: str, tmp_path: Path) -> None:
    # One worker: with two, schemathesis's threads call ast.parse side by side (through Hypothesis's descriptions of
    # its filters), and CPython 3.11's parser keeps its recursion depth per interpreter, not per thread: it failed
    # once in CI with "SystemError: AST constructor recursion depth mismatch", a crash of the tool, not the server.
    command = [
        *schemathesis_command(), "--config-file", str(CONFIG), "--no-color", "run", f"{base_url}/openapi.json",
        "--max-time", SECONDS, "--seed", SEED, "--workers", "1", "--request-timeout", "30",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=float(SECONDS) + 120)
    output = completed.stdout + completed.stderr
    cases = re.search(r"(\d+) generated", output)
    print(f"schemathesis: {cases.group(0) if cases else 'no case count'} in at most {SECONDS} s")
    assert completed.returncode == 0, output[-6000:]
    assert cases and int(cases.group(1)) > 100, output[-3000:]
