"""Ratios against the naive baseline and the framework floor of the same run, the targets, and the markdown tables.

Ratios compare images per second at the same concurrency, so for single-image scenarios they are ratios of
requests per second, and for the batch scenario they say how many more images it classifies. Goodput counts
only the images of successful responses: under overload a refused request is no throughput. With a baseline
(`--baseline REF`), every twin pair is compared by goodput and CPU per request at each concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.catalog import BASELINE_SUFFIX, FLOOR_SCENARIO, NAIVE_SCENARIO

SERVICE_SINGLE_SCENARIO = "service-json"
SERVICE_BATCH_SCENARIO = "service-batch64"
SERVICE_OVERLOAD_SCENARIO = "service-overload"
SERVICE_SERVER = "service"
V2_BINARY_BATCH_SCENARIO = "v2-binary-batch64"
GRPC_SINGLE_SCENARIO = "grpc"
NO_METRICS_SCENARIO = "nometrics-json"
SERVICE_PNG_SCENARIO = "service-png"
SERVICE_CANVAS_SCENARIO = "service-canvas"
LITERT_SINGLE_SCENARIO = "litert-json"
LITERT_BATCH_SCENARIO = "litert-batch64"
# The overload target compares goodput at these two levels: the service's own, and sixteen times as many clients.
OVERLOAD_LOW, OVERLOAD_HIGH = 4, 64
# "Not slower than the baseline": new / base goodput of every twin pair at every level at least this.
BASELINE_MIN_RATIO = 0.95


def run_at(results: dict[str, Any], scenario_name: str, concurrency: int) -> dict[str, Any] | None:
    for scenario in results["scenarios"]:
        if scenario["name"] == scenario_name and scenario["status"] != "failed":
            for run in scenario["runs"]:
                if run["concurrency"] == concurrency:
                    return run
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def compute_ratios(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """For each scenario and concurrency: images/s over the naive baseline's and over the floor's."""
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for scenario in results["scenarios"]:
        by_concurrency = {}
        for run in scenario["runs"]:
            naive = run_at(results, NAIVE_SCENARIO, run["concurrency"])
            floor = run_at(results, FLOOR_SCENARIO, run["concurrency"])
            by_concurrency[str(run["concurrency"])] = {
                "vs_naive": ratio(run["images_per_second"], naive and naive["images_per_second"]),
                "vs_floor": ratio(run["images_per_second"], floor and floor["images_per_second"]),
            }
        ratios[scenario["name"]] = by_concurrency
    return ratios


def best_images_per_second(results: dict[str, Any], scenario_name: str) -> float | None:
    """The highest images/s of the scenario over the levels it ran at; None if it did not run."""
    runs = [run_at(results, scenario_name, level) for level in measured_levels(results)]
    return max((run["images_per_second"] for run in runs if run), default=None)


def measured_levels(results: dict[str, Any]) -> list[int]:
    """Every concurrency any scenario ran at, ascending (scenarios may have levels of their own)."""
    return sorted({run["concurrency"] for scenario in results["scenarios"] for run in scenario["runs"]})


def goodput_at(results: dict[str, Any], scenario_name: str, concurrency: int) -> float | None:
    run = run_at(results, scenario_name, concurrency)
    return run.get("goodput_images_per_second") if run else None


def baseline_comparison(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per twin pair and concurrency either ran at: goodput and CPU per request, new and base (None
    where one of the two has no measurement, so a twin that failed leaves a visible gap)."""
    by_name = {scenario["name"]: scenario for scenario in results["scenarios"]}
    rows = []
    for name, scenario in by_name.items():
        twin = by_name.get(name + BASELINE_SUFFIX)
        if twin is None:
            continue
        for concurrency in sorted({run["concurrency"] for run in scenario["runs"] + twin["runs"]}):
            new, base = run_at(results, name, concurrency) or {}, run_at(results, twin["name"], concurrency) or {}
            rows.append(
                {
                    "scenario": name,
                    "concurrency": concurrency,
                    "goodput_new": new.get("goodput_images_per_second"),
                    "goodput_base": base.get("goodput_images_per_second"),
                    "ratio": ratio(new.get("goodput_images_per_second"), base.get("goodput_images_per_second")),
                    "cpu_ms_per_request_new": new.get("cpu_ms_per_request"),
                    "cpu_ms_per_request_base": base.get("cpu_ms_per_request"),
                }
            )
    return rows


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: float | None
    unit: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "measured": self.measured, "unit": self.unit, "met": self.met}


def at_least(name: str, goal: str, measured: float | None, threshold: float, unit: str) -> Target:
    return Target(name, goal, measured, unit, None if measured is None else measured >= threshold)


def at_most(name: str, goal: str, measured: float | None, threshold: float, unit: str) -> Target:
    return Target(name, goal, measured, unit, None if measured is None else measured <= threshold)


def evaluate_targets(results: dict[str, Any], ratios: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each met, not met, or not measured (None) in this run."""
    single_ratios = ratios.get(SERVICE_SINGLE_SCENARIO, {}).get("64", {})
    single_at_64 = run_at(results, SERVICE_SINGLE_SCENARIO, 64)
    single_at_1 = run_at(results, SERVICE_SINGLE_SCENARIO, 1)
    best_batch = best_images_per_second(results, SERVICE_BATCH_SCENARIO)
    # The naive server handles one request at a time whatever the concurrency, and at c=64 its responses leave
    # in convoys that a fixed window cuts; its best level is its capacity, and the conservative denominator.
    best_naive = best_images_per_second(results, NAIVE_SCENARIO)
    service = next((server for server in results["servers"] if server["name"] == SERVICE_SERVER), {})
    targets = [
        at_least(
            "single-image JSON req/s at c=64 over the floor's",
            "≥ 1.0×",
            single_ratios.get("vs_floor"),
            1.0,
            "x",
        ),
        at_least(
            "single-image JSON req/s at c=64 over the naive baseline's best",
            "≥ 200×",
            ratio(single_at_64 and single_at_64["images_per_second"], best_naive),
            200.0,
            "x",
        ),
        at_most(
            "single-image JSON p50 latency at c=1",
            "≤ 1.5 ms",
            single_at_1 and single_at_1["latency_ms"]["p50"],
            1.5,
            "ms",
        ),
        at_least("batches of 64: images/s (best concurrency)", "≥ 15,000", best_batch, 15_000, "images/s"),
        at_most("service peak RSS", "≤ 700 MB", service.get("peak_rss_mb"), 700, "MB"),
        at_most("service start to ready", "≤ 10 s", service.get("start_to_ready_seconds"), 10, "s"),
        at_least(
            f"overload: goodput at c={OVERLOAD_HIGH} over goodput at c={OVERLOAD_LOW} (service-overload)",
            "≥ 0.5×",
            ratio(
                goodput_at(results, SERVICE_OVERLOAD_SCENARIO, OVERLOAD_HIGH),
                goodput_at(results, SERVICE_OVERLOAD_SCENARIO, OVERLOAD_LOW),
            ),
            0.5,
            "x",
        ),
    ]
    grpc_at_64 = run_at(results, GRPC_SINGLE_SCENARIO, 64)
    no_metrics_at_64 = run_at(results, NO_METRICS_SCENARIO, 64)
    targets += [
        at_least(
            "single-image JSON req/s at c=64 with metrics on over with them off",
            "≥ 0.95×",
            ratio(
                single_at_64 and single_at_64["images_per_second"],
                no_metrics_at_64 and no_metrics_at_64["images_per_second"],
            ),
            0.95,
            "x",
        ),
        at_least(
            "Open Inference Protocol REST, binary batches of 64: images/s (best concurrency)",
            "≥ 15,000",
            best_images_per_second(results, V2_BINARY_BATCH_SCENARIO),
            15_000,
            "images/s",
        ),
        at_least(
            "gRPC single-image req/s at c=64 over the native single-image JSON's",
            "≥ 0.8×",
            ratio(grpc_at_64 and grpc_at_64["images_per_second"], single_at_64 and single_at_64["images_per_second"]),
            0.8,
            "x",
        ),
    ]
    png_at_64 = run_at(results, SERVICE_PNG_SCENARIO, 64)
    canvas_at_64 = run_at(results, SERVICE_CANVAS_SCENARIO, 64)
    targets += [
        at_least(
            "one 140x140 PNG upload: req/s at c=64",
            "≥ 1,600",
            png_at_64 and png_at_64["images_per_second"],
            1_600,
            "req/s",
        ),
        at_least(
            "one 280x280 RGBA canvas as a data: URL: req/s at c=64",
            "≥ 1,200",
            canvas_at_64 and canvas_at_64["images_per_second"],
            1_200,
            "req/s",
        ),
        at_least(
            "LiteRT single-image JSON req/s at c=64 over the floor's",
            "≥ 1.2×",
            ratios.get(LITERT_SINGLE_SCENARIO, {}).get("64", {}).get("vs_floor"),
            1.2,
            "x",
        ),
        at_least(
            "LiteRT batches of 64: images/s (best concurrency)",
            "≥ 20,000",
            best_images_per_second(results, LITERT_BATCH_SCENARIO),
            20_000,
            "images/s",
        ),
    ]
    if results.get("baseline"):
        ratios_to_base = [row["ratio"] for row in results.get("baseline_comparison", [])]
        # Not measured when a pair has no ratio (one of the twins failed or succeeded at nothing): a gap is no verdict.
        slowest = min(ratios_to_base) if ratios_to_base and None not in ratios_to_base else None
        targets.append(
            at_least(
                f"no scenario slower than the baseline by more than 5% (slowest new / base goodput, "
                f"{results['baseline']['ref']})",
                "≥ 0.95×",
                slowest,
                BASELINE_MIN_RATIO,
                "x",
            )
        )
    return [target.as_dict() for target in targets]


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 0.1:
        return f"{value:.2g}×"
    return f"{value:,.2f}×" if value < 10 else f"{value:,.0f}×"


def servers_by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {server["name"]: server for server in results["servers"]}


def failures_cell(scenario: dict[str, Any], run: dict[str, Any]) -> str:
    """Failures in bold; where refusals are expected, the refusals after them, not in bold."""
    failures = run["non_2xx"] + run["errors"]
    if not scenario.get("refusals_expected"):
        return f"**{failures}**" if failures else "0"
    counts = run.get("status_counts") or {}
    refused = counts.get("503", 0) if counts else run["non_2xx"]
    unexpected = failures - refused
    shown = f"**{unexpected}**" if unexpected else "0"
    return f"{shown} + {number(refused)} refused" if refused else shown


def scenario_rows(results: dict[str, Any]) -> list[str]:
    servers = servers_by_name(results)
    rows = []
    for scenario in results["scenarios"]:
        server = servers.get(scenario["server"], {})
        if scenario["status"] == "failed" and not scenario["runs"]:
            reason = (scenario["error"] or "").splitlines()[0] if scenario["error"] else "failed"
            rows.append(f"| {scenario['name']} | – | failed: {reason} |" + " |" * 11)
            continue
        for run in scenario["runs"]:
            ratios = results["ratios"][scenario["name"]][str(run["concurrency"])]
            cells = [
                scenario["name"],
                str(run["concurrency"]),
                number(run["requests_per_second"]),
                number(run["images_per_second"]),
                number(run.get("goodput_images_per_second")),
                number(run["latency_ms"]["p50"], 2),
                number(run["latency_ms"]["p99"], 2),
                number(run["cpu_ms_per_request"], 3),
                " / ".join(number(run[key], 2) for key in ("server_cpu_cores", "loadgen_cpu_cores", "other_cpu_cores")),
                number(run["peak_rss_mb"]),
                number(server.get("start_to_ready_seconds"), 2),
                times(ratios["vs_naive"]),
                times(ratios["vs_floor"]),
                failures_cell(scenario, run),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def target_rows(results: dict[str, Any]) -> list[str]:
    verdicts = {True: "met", False: "**not met**", None: "not measured"}
    rows = []
    for target in results["targets"]:
        measured = target["measured"]
        unit = "×" if target["unit"] == "x" else f" {target['unit']}"
        shown = "–" if measured is None else f"{number(measured, 2 if measured < 100 else 0)}{unit}"
        rows.append(f"| {target['name']} | {target['goal']} | {shown} | {verdicts[target['met']]} |")
    return rows


def baseline_lines(results: dict[str, Any]) -> list[str]:
    """The table against the baseline, or nothing when the run had none."""
    baseline = results.get("baseline")
    if not baseline:
        return []
    lines = [
        "",
        f"Against the baseline {baseline['ref']} ({baseline['commit'][:12]}): each scenario beside its "
        f"`{BASELINE_SUFFIX}` twin, the same server started from a worktree of that commit.",
        "",
        "| scenario | c | goodput images/s new | goodput images/s base | new / base "
        "| CPU ms/req new | CPU ms/req base |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in results.get("baseline_comparison", []):
        slower = row["ratio"] is not None and row["ratio"] < BASELINE_MIN_RATIO
        shown_ratio = times(row["ratio"])
        cells = [
            row["scenario"],
            str(row["concurrency"]),
            number(row["goodput_new"]),
            number(row["goodput_base"]),
            f"**{shown_ratio}**" if slower else shown_ratio,
            number(row["cpu_ms_per_request_new"], 3),
            number(row["cpu_ms_per_request_base"], 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    machine = results["machine"]
    lines = [
        f"Command: `{results['command']}`",
        "",
        f"{results['started_at']}, {machine['cpu_count']} CPUs, load generator {settings['loadgen']}, "
        f"{number(settings['duration_seconds'], 1)} s runs after {number(settings['warmup_seconds'], 1)} s of warm-up, "
        f"median of {settings['repeats']} repeat(s).",
        "",
        "| scenario | c | req/s | images/s | goodput images/s | p50 ms | p99 ms | server CPU ms/req "
        "| CPU cores server / loadgen / other | peak RSS MB | start to ready s | × naive | × floor | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        *scenario_rows(results),
        *baseline_lines(results),
        "",
        "| target | goal | measured | verdict |",
        "|---|---|--:|---|",
        *target_rows(results),
    ]
    failed_servers = [server for server in results["servers"] if server["status"] == "failed"]
    for server in failed_servers:
        lines += ["", f"Server {server['name']} did not start: {(server['error'] or '').splitlines()[0]}"]
    return "\n".join(lines) + "\n"
