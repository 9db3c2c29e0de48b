"""The benchmark's smoke run: `python -m bench --smoke` starts real servers, loads them for seconds and writes a
well-formed result. No timing is asserted: CI machines are shared and slow, so only the shape and the absence of
errors are checked. The report's arithmetic (goodput, refusals, the baseline table) and the catalog's twins and
levels are checked on synthetic results, without servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.catalog import SERVERS, all_levels, select_scenarios, with_baseline_twins
from bench.h2load import grpc_frame, parse_h2load
from bench.load import LoadGeneratorError
from bench.report import baseline_comparison, compute_ratios, evaluate_targets, failures_cell, markdown_report
from bench.runner import unexpected_failures

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
    assert [set(target) for target in results["targets"]] == [{"name", "goal", "measured", "unit", "met"}] * 14
    assert results["baseline"] is None


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
            assert run["goodput_images_per_second"] == pytest.approx(run["images_per_second"], rel=0.01)
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


def synthetic_run(concurrency: int, goodput: float, *, non_2xx: int = 0, cpu_ms: float = 1.0) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "requests_per_second": goodput,
        "images_per_second": goodput,
        "goodput_images_per_second": goodput,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
        "cpu_ms_per_request": cpu_ms,
        "server_cpu_cores": 1.0,
        "loadgen_cpu_cores": 0.1,
        "other_cpu_cores": 0.0,
        "requests": 100,
        "non_2xx": non_2xx,
        "errors": 0,
        "status_counts": {"200": 100 - non_2xx, "503": non_2xx} if non_2xx else {},
        "peak_rss_mb": 600.0,
    }


def synthetic_scenario(name: str, server: str, runs: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"name": name, "server": server, "status": "ok", "error": None, "runs": runs, **fields}


def synthetic_results() -> dict[str, Any]:
    return {
        "command": "python -m bench",
        "started_at": "2026-12-02 00:00:00",
        "settings": {"loadgen": "wrk", "duration_seconds": 1.0, "warmup_seconds": 0.5, "repeats": 1},
        "machine": {"cpu_count": 2},
        "baseline": {"ref": "HEAD~1", "commit": "0123456789abcdef", "worktree": "/tmp/x"},
        "servers": [{"name": "service", "status": "ready", "start_to_ready_seconds": 3.0, "peak_rss_mb": 600.0}],
        "scenarios": [
            synthetic_scenario("service-json", "service", [synthetic_run(1, 1000.0), synthetic_run(8, 2000.0)]),
            synthetic_scenario(
                "service-json@base", "service@base", [synthetic_run(1, 1000.0), synthetic_run(8, 2500.0)]
            ),
            synthetic_scenario(
                "service-overload",
                "service",
                [synthetic_run(4, 10_000.0), synthetic_run(64, 6_000.0, non_2xx=40)],
                refusals_expected=True,
            ),
        ],
    }


def test_baseline_comparison_pairs_each_twin_by_concurrency() -> None:
    rows = baseline_comparison(synthetic_results())
    assert [(row["scenario"], row["concurrency"], row["ratio"]) for row in rows] == [
        ("service-json", 1, 1.0),
        ("service-json", 8, 0.8),
    ]


def test_targets_include_the_overload_goodput_and_the_baseline() -> None:
    results = synthetic_results()
    results["baseline_comparison"] = baseline_comparison(results)
    targets = {target["name"].split(":")[0].split(" (")[0]: target for target in evaluate_targets(results, {})}
    assert targets["overload"]["measured"] == pytest.approx(0.6)
    assert targets["overload"]["met"] is True
    slowest = targets["no scenario slower than the baseline by more than 5%"]
    assert slowest["measured"] == pytest.approx(0.8)
    assert slowest["met"] is False


def test_targets_of_the_image_paths_read_their_own_scenarios_at_64_clients() -> None:
    results = synthetic_results()
    results["scenarios"] += [
        synthetic_scenario("service-png", "service", [synthetic_run(8, 5_000.0), synthetic_run(64, 1_700.0)]),
        synthetic_scenario("service-canvas", "service", [synthetic_run(64, 900.0)]),
    ]
    targets = {target["name"]: target for target in evaluate_targets(results, {})}
    png = targets["one 140x140 PNG upload: req/s at c=64"]
    canvas = targets["one 280x280 RGBA canvas as a data: URL: req/s at c=64"]
    assert (png["measured"], png["met"]) == (pytest.approx(1_700.0), True)
    assert (canvas["measured"], canvas["met"]) == (pytest.approx(900.0), False)
    assert targets["LiteRT batches of 64: images/s (best concurrency)"]["met"] is None  # not run: no verdict


def test_expected_refusals_are_shown_apart_and_do_not_count_as_failures() -> None:
    overload = synthetic_results()["scenarios"][2]
    assert failures_cell(overload, overload["runs"][1]) == "0 + 40 refused"
    assert unexpected_failures(overload["runs"][1], refusals_expected=True) == 0
    assert unexpected_failures(overload["runs"][1], refusals_expected=False) == 40
    assert unexpected_failures({**overload["runs"][1], "status_counts": {}}, refusals_expected=True) == 0


def test_the_markdown_has_the_goodput_column_and_the_baseline_table() -> None:
    results = synthetic_results()
    results["ratios"] = compute_ratios(results)
    results["baseline_comparison"] = baseline_comparison(results)
    results["targets"] = evaluate_targets(results, results["ratios"])
    report = markdown_report(results)
    assert "| images/s | goodput images/s |" in report
    assert "Against the baseline HEAD~1 (0123456789ab)" in report
    assert "| service-json | 8 | 2,000 | 2,500 | **0.80×** | 1.000 | 1.000 |" in report


def test_baseline_twins_follow_their_originals_and_run_from_the_worktree() -> None:
    scenarios, servers = with_baseline_twins(
        select_scenarios(["floor", "service-json", "h11-json"]), dict(SERVERS), Path("/tmp/worktree"), "HEAD"
    )
    assert [scenario.name for scenario in scenarios] == ["floor", "service-json", "service-json@base", "h11-json"]
    names = list(servers)
    assert names[names.index("service") + 1] == "service@base"
    assert "service-litert@base" not in servers
    assert servers["service@base"].repository_root == Path("/tmp/worktree")
    assert servers["service@base"].command == servers["service"].command


def test_scenarios_with_levels_of_their_own_add_them_to_the_run() -> None:
    assert all_levels(select_scenarios(["service-json", "service-overload"]), (1,)) == [1, 4, 64]


def test_protocol_scenarios_get_no_baseline_twin() -> None:
    """A baseline from before /v2 and gRPC cannot serve them; the native scenarios on the same server still twin."""
    scenarios, _ = with_baseline_twins(
        select_scenarios(["service-json", "v2-binary-batch64", "grpc"]), dict(SERVERS), Path("/tmp/worktree"), "HEAD"
    )
    assert [scenario.name for scenario in scenarios] == [
        "service-json",
        "service-json@base",
        "v2-binary-batch64",
        "grpc",
    ]


H2LOAD_OUTPUT = """starting benchmark...
finished in 10.00s, 3355.40 req/s, 592.38KB/s
requests: 33554 total, 33618 started, 33554 done, 33550 succeeded, 4 failed, 1 errored, 0 timeout
status codes: 33550 2xx, 0 3xx, 3 4xx, 0 5xx
"""


def test_h2load_summary_and_request_log_become_a_load_result() -> None:
    log = "".join(f"1796515592{index:06d}\t200\t{latency}\n" for index, latency in enumerate(range(1000, 101000, 1000)))
    result = parse_h2load(H2LOAD_OUTPUT, log, concurrency=64, cpu_seconds=0.8)
    assert (result.requests, result.non_2xx, result.errors) == (33554, 3, 1)
    assert result.duration_seconds == 10.0
    assert result.latency_p50_ms == 50.0 and result.latency_p99_ms == 99.0 and result.latency_max_ms == 100.0
    assert result.tool == "h2load" and result.loadgen_cpu_seconds == 0.8


def test_h2load_without_a_summary_is_an_error() -> None:
    with pytest.raises(LoadGeneratorError):
        parse_h2load("connect failed\n", "", concurrency=1, cpu_seconds=0.0)


def test_grpc_frame_is_the_length_prefixed_message() -> None:
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
