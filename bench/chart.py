"""The PNG chart: requests per second per scenario and concurrency, and p50 / p99 latency, both on log scales."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

# The backend is chosen before pyplot is imported, so that no display is ever looked for.
matplotlib.use("Agg")

import matplotlib.pyplot as plt

BAR_GROUP_WIDTH = 0.8


def measured_scenarios(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [scenario for scenario in results["scenarios"] if scenario["runs"]]


def tick_label(scenario: dict[str, Any]) -> str:
    images = scenario["images_per_request"]
    return scenario["name"] if images == 1 else f"{scenario['name']}\n({images} images/request)"


def draw_chart(results: dict[str, Any], path: Path) -> None:
    scenarios = measured_scenarios(results)
    # Every level any scenario ran at: a scenario with levels of its own may add some to the run's.
    ran_at = {run["concurrency"] for scenario in scenarios for run in scenario["runs"]}
    levels = sorted(ran_at) or results["settings"]["concurrency_levels"]
    figure, (throughput_axes, latency_axes) = plt.subplots(2, 1, figsize=(11, 8.5), constrained_layout=True)
    bar_width = BAR_GROUP_WIDTH / max(1, len(levels))
    colors = plt.get_cmap("viridis")([index / max(1, len(levels) - 1) * 0.85 for index in range(len(levels))])
    for level_index, concurrency in enumerate(levels):
        offset = (level_index - (len(levels) - 1) / 2) * bar_width
        positions, throughputs, p50s, p99s = [], [], [], []
        for scenario_index, scenario in enumerate(scenarios):
            run = next((run for run in scenario["runs"] if run["concurrency"] == concurrency), None)
            if run is None:
                continue
            positions.append(scenario_index + offset)
            throughputs.append(run["requests_per_second"])
            p50s.append(run["latency_ms"]["p50"] or 0)
            p99s.append(run["latency_ms"]["p99"] or 0)
        color = colors[level_index]
        bars = throughput_axes.bar(positions, throughputs, bar_width, color=color, label=f"c={concurrency}")
        throughput_axes.bar_label(bars, labels=[f"{value:,.0f}" for value in throughputs], fontsize=7, rotation=90)
        latency_axes.bar(positions, p99s, bar_width, color=color, alpha=0.35, label=f"p99, c={concurrency}")
        latency_axes.bar(positions, p50s, bar_width * 0.6, color=color, label=f"p50, c={concurrency}")
    names = [tick_label(scenario) for scenario in scenarios]
    for axes in (throughput_axes, latency_axes):
        axes.set_xticks(range(len(names)), names)
        axes.set_yscale("log")
        axes.grid(axis="y", which="both", alpha=0.3)
    # Room above the tallest bar for its label, which a log axis otherwise crops.
    throughput_axes.set_ylim(top=throughput_axes.get_ylim()[1] * 4)
    throughput_axes.set_ylabel("requests / s (log)")
    throughput_axes.set_title(f"Throughput ({results['settings']['loadgen']}, {results['started_at']})")
    throughput_axes.legend(title="concurrency")
    latency_axes.set_ylabel("latency ms (log)")
    latency_axes.set_title("Latency: p50 (narrow, solid) and p99 (wide, light)")
    latency_axes.legend(ncol=len(levels), fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)
