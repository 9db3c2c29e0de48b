"""The benchmark's smoke run: `python -m bench --smoke` starts real servers, loads them for seconds and writes a
well-formed result. No timing is asserted: CI machines are shared and slow, so only the shape and the absence of
errors are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SERVICE_EXISTS = (REPOSITORY_ROOT / "service" / "__main__.py").is_file()
SMOKE_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return completed, out


@pytest.fixture(scope="module")
def results(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    completed, out = smoke_run
    path = out / "latest.json"
    assert path.is_file(), completed.stderr
    return json.loads(path.read_text())


def expected_scenarios() -> list[str]:
    # Until the service exists, only the floor can run; once it does, its JSON scenario must pass as well.
    return ["floor", "service-json"] if SERVICE_EXISTS else ["floor"]


@pytest.mark.slow
def test_bench_smoke_exits_zero_when_every_scenario_passes(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    completed, _ = smoke_run
    if not SERVICE_EXISTS:
        pytest.skip("service/__main__.py does not exist yet, so the service scenario fails by design")
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.mark.slow
def test_bench_smoke_results_have_the_expected_structure(results: dict[str, Any]) -> None:
    assert results["schema_version"] == 1
    assert results["smoke"] is True
    assert results["settings"]["loadgen"] == "httpx"
    assert results["settings"]["concurrency_levels"] == [1, 4]
    assert [scenario["name"] for scenario in results["scenarios"]] == ["floor", "service-json"]
    assert {server["name"] for server in results["servers"]} == {"floor", "service"}
    assert set(results["ratios"]) == {"floor", "service-json"}
    assert [set(target) for target in results["targets"]] == [{"name", "goal", "measured", "unit", "met"}] * 6


@pytest.mark.slow
def test_bench_smoke_every_scenario_completes_requests_without_errors(results: dict[str, Any]) -> None:
    scenarios = {scenario["name"]: scenario for scenario in results["scenarios"]}
    for name in expected_scenarios():
        scenario = scenarios[name]
        assert scenario["status"] == "ok", scenario["error"]
        assert [run["concurrency"] for run in scenario["runs"]] == [1, 4]
        for run in scenario["runs"]:
            assert run["requests"] > 0
            assert run["non_2xx"] == 0
            assert run["errors"] == 0
            assert run["requests_per_second"] > 0
            assert run["latency_ms"]["p50"] > 0
            assert run["latency_ms"]["p99"] >= run["latency_ms"]["p50"]
            assert run["cpu_ms_per_request"] is not None
            assert run["peak_rss_mb"] > 0


@pytest.mark.slow
def test_bench_smoke_servers_report_start_to_ready_and_memory(results: dict[str, Any]) -> None:
    servers = {server["name"]: server for server in results["servers"]}
    started = ["floor", "service"] if SERVICE_EXISTS else ["floor"]
    for name in started:
        assert servers[name]["status"] == "ready", servers[name]["error"]
        assert servers[name]["start_to_ready_seconds"] > 0
        assert servers[name]["peak_rss_mb"] >= servers[name]["end_rss_mb"] > 0


@pytest.mark.slow
def test_bench_smoke_writes_the_table_and_the_chart(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    completed, out = smoke_run
    assert "| scenario | c | req/s |" in (out / "latest.md").read_text()
    assert "| scenario | c | req/s |" in completed.stdout
    assert (out / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
