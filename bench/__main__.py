"""The CLI: `python -m bench` measures every scenario; `python -m bench --smoke` is the seconds-long CI variant.

It writes `<out>/bench-<time>.json`, `.md` and `.png`, copies them to `<out>/latest.*`, prints the markdown
table, and exits 0 only when every selected scenario completed without an error. With `--baseline REF` the
service's scenarios also run on twins started from a temporary git worktree of REF, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.baseline import Baseline, BaselineError, baseline_worktree
from bench.catalog import (
    SCENARIOS,
    SERVERS,
    SMOKE_SCENARIOS,
    ScenarioSpec,
    ServerSpec,
    extra_scenario_names,
    scenario_names,
    select_scenarios,
    with_baseline_twins,
)
from bench.chart import draw_chart
from bench.payloads import build_payloads, write_payload
from bench.report import baseline_comparison, compute_ratios, evaluate_targets, markdown_report
from bench.runner import PreparedPayload, RunSettings, run_benchmark
from bench.wrk import wrk_available

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPOSITORY_ROOT / "bench" / "results"

# The full run and the smoke run differ only in these defaults; any option given explicitly wins.
FULL_DEFAULTS = {"duration": 10.0, "warmup": 2.0, "concurrency": "1,8,64", "loadgen": "auto"}
SMOKE_DEFAULTS = {"duration": 1.0, "warmup": 0.5, "concurrency": "1,4", "loadgen": "httpx"}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark digit-serve against the naive baseline and the framework floor."
    )
    parser.add_argument("--smoke", action="store_true", help="seconds-long run of the floor and service-json")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 10; smoke 1)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run (default 2)")
    parser.add_argument("--concurrency", help="comma-separated connection counts (default 1,8,64; smoke 1,4)")
    parser.add_argument("--repeats", type=int, default=1, help="measured runs per level; the median is reported")
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset of: {', '.join(scenario_names())} (the default run); "
        f"or of the extra ones, run only when named: {', '.join(extra_scenario_names())}",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the service's scenarios on twins (<name>@base) started from a git worktree of REF "
        "(HEAD, a branch, a commit), and compare",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "httpx"), help="auto: wrk when installed (smoke: httpx)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON, markdown and PNG")
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("BENCH_MODEL_DIR", "models/mnist_convnet"),
        help="model folder from the repo root (default: $BENCH_MODEL_DIR, else models/mnist_convnet)",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds one request may take")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds a server may take to be ready")
    options = parser.parse_args(argv)
    defaults = SMOKE_DEFAULTS if options.smoke else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    return options


def choose_loadgen(requested: str) -> str:
    if requested == "auto":
        return "wrk" if wrk_available() else "httpx"
    if requested == "wrk" and not wrk_available():
        raise SystemExit("wrk is not installed: apt-get install -y wrk, or use --loadgen httpx")
    return requested


def run_settings(options: argparse.Namespace) -> RunSettings:
    levels = tuple(int(level) for level in options.concurrency.split(","))
    if not levels or min(levels) < 1 or options.repeats < 1 or options.duration <= 0:
        raise SystemExit("--concurrency levels, --repeats and --duration must be positive")
    return RunSettings(
        duration_seconds=options.duration,
        warmup_seconds=options.warmup,
        concurrency_levels=levels,
        repeats=options.repeats,
        loadgen=choose_loadgen(options.loadgen),
        request_timeout_seconds=options.request_timeout,
        ready_timeout_seconds=options.ready_timeout,
        model_directory=options.model_dir,
    )


def chosen_scenario_names(options: argparse.Namespace) -> list[str]:
    if options.scenarios:
        return [name.strip() for name in options.scenarios.split(",") if name.strip()]
    if options.smoke:
        return list(SMOKE_SCENARIOS)
    return [scenario.name for scenario in SCENARIOS]


def tool_version(command: list[str]) -> str | None:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else None


def machine_description(settings: RunSettings) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        # On a shared machine this says how busy it was when the run began.
        "load_average_at_start": list(os.getloadavg()),
        "wrk": tool_version(["wrk", "-v"]) if settings.loadgen == "wrk" else None,
    }


def write_outputs(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(results["started_at_epoch"]))
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown_report(results))
    draw_chart(results, paths["png"])
    for suffix, path in paths.items():
        shutil.copyfile(path, out / f"latest.{suffix}")
    return paths


def enter_baseline(stack: ExitStack, ref: str | None) -> Baseline | None:
    """The baseline's worktree when a ref was given, removed when the stack closes; else None."""
    if ref is None:
        return None
    try:
        baseline = stack.enter_context(baseline_worktree(REPOSITORY_ROOT, ref))
    except BaselineError as error:
        raise SystemExit(str(error)) from None
    print(f"baseline {ref}: commit {baseline.commit} checked out in {baseline.worktree}", file=sys.stderr)
    return baseline


def scenarios_and_servers(
    scenarios: list[ScenarioSpec], baseline: Baseline | None
) -> tuple[list[ScenarioSpec], dict[str, ServerSpec]]:
    """The scenarios to run and the servers they name, with the baseline's twins when there is one."""
    if baseline is None:
        return scenarios, dict(SERVERS)
    label = f"{baseline.ref} ({baseline.commit[:12]})"
    return with_baseline_twins(scenarios, dict(SERVERS), baseline.worktree, label)


def measure(
    scenarios: list[ScenarioSpec], settings: RunSettings, baseline: Baseline | None, out: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the request bodies to files and run the benchmark; returns the server and scenario records."""
    planned_scenarios, server_specs = scenarios_and_servers(scenarios, baseline)
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as body_directory:
        payloads = {
            name: PreparedPayload(payload, write_payload(payload, Path(body_directory)))
            for name, payload in build_payloads().items()
        }
        return run_benchmark(
            planned_scenarios,
            payloads,
            settings,
            servers=server_specs,
            repository_root=REPOSITORY_ROOT,
            log_directory=out / "logs",
        )


def raise_on_termination(signal_number: int, _frame: object) -> None:
    """Turn SIGTERM into an exception, so the servers are stopped on the way out as for Ctrl-C."""
    raise SystemExit(128 + signal_number)


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    settings = run_settings(options)
    try:
        scenarios = select_scenarios(chosen_scenario_names(options))
    except ValueError as error:
        raise SystemExit(str(error)) from None
    signal.signal(signal.SIGTERM, raise_on_termination)
    out = options.out.resolve()
    started = time.time()
    results: dict[str, Any] = {
        "schema_version": 1,
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "started_at_epoch": started,
        "smoke": options.smoke,
        "settings": {**vars(settings), "concurrency_levels": list(settings.concurrency_levels)},
        "machine": machine_description(settings),
    }
    try:
        with ExitStack() as stack:
            baseline = enter_baseline(stack, options.baseline)
            results["baseline"] = baseline.as_dict() if baseline else None
            servers, scenario_results = measure(scenarios, settings, baseline, out)
    except KeyboardInterrupt:
        print("interrupted; every server has been stopped and any baseline worktree removed", file=sys.stderr)
        return 130
    results.update(servers=servers, scenarios=scenario_results, finished_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    results["ratios"] = compute_ratios(results)
    if baseline is not None:
        results["baseline_comparison"] = baseline_comparison(results)
    results["targets"] = evaluate_targets(results, results["ratios"])
    paths = write_outputs(results, out)
    print(markdown_report(results))
    print(f"wrote {paths['json']}, {paths['md']} and {paths['png']}", file=sys.stderr)
    return 0 if all(scenario["status"] == "ok" for scenario in scenario_results) else 1


if __name__ == "__main__":
    sys.exit(main())
