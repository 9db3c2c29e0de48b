"""Hot reload under load: /predict latency at 16 clients with no load in progress and while versions are switched
in, the failed requests across the switches, and the resident memory with the whole repository loaded.

    python -m bench.reload                  # 10 switches; writes bench/results/reload.{json,md}
    python -m bench.reload --switches 20 --clients 16 --steady-seconds 10

It serves a copy of the committed repository (mnist_convnet and mnist_no_maxpool) from a temporary folder, on
127.0.0.1, and adds versions to it the way the training job does: a copy under a `.tmp-` name, renamed into place.
The clients are threads of this process with keep-alive connections; they share the two cores with the server in
both phases alike, so compare the phases with each other, not with `make bench`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.launcher import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
MODELS = REPOSITORY_ROOT / "models"
BODY = {"image": [[0] * 28 for _ in range(8)] + [[0] * 10 + [255] * 8 + [0] * 10] * 12 + [[0] * 28] * 8}


def copy_repository(destination: Path) -> list[str]:
    shutil.copy(MODELS / "model_card.schema.json", destination / "model_card.schema.json")
    names = []
    for model in ("mnist_convnet", "mnist_no_maxpool"):
        if (MODELS / model / "1").is_dir():
            shutil.copytree(MODELS / model / "1", destination / model / "1")
            names.append(model)
    return names


def add_version(repository: Path, version: int) -> None:
    staging = repository / "mnist_convnet" / f".tmp-{version}"
    shutil.copytree(MODELS / "mnist_convnet" / "1", staging)
    card_path = staging / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["version"] = version
    card_path.write_text(json.dumps(card))
    staging.rename(repository / "mnist_convnet" / str(version))


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    """`clients` threads posting one image each, back to back, until stopped; every latency and outcome kept."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.clients = clients
        self.latencies_ms: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.post("/predict", json=BODY)
                except httpx.HTTPError as error:
                    self.outcomes[type(error).__name__] += 1
                    continue
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.outcomes[str(response.status_code)] += 1
                if response.status_code == 200:
                    self.versions[response.json()["model"]["version"]] += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        latencies = sorted(self.latencies_ms)
        return {
            "requests": len(latencies),
            "requests_per_second": round(len(latencies) / seconds, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
            "max_ms": round(latencies[-1], 2),
            "failed": sum(count for outcome, count in self.outcomes.items() if outcome != "200"),
            "outcomes": dict(self.outcomes),
            "answered_by_version": dict(sorted(self.versions.items())),
        }


def served_versions(url: str) -> list[int]:
    listing = httpx.get(url + "/models", timeout=10).json()
    model = next(item for item in listing["models"] if item["name"] == "mnist_convnet")
    return [status["version"] for status in model["versions"] if status["state"] == "AVAILABLE"]


def measure(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="digit-serve-reload-") as folder:
        repository = Path(folder)
        models = copy_repository(repository)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (repository / "server.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(port), "--model-repository", str(repository),
             "--poll-seconds", str(options.poll_seconds)],
            cwd=REPOSITORY_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            for _ in range(50):
                httpx.post(url + "/predict", json=BODY, timeout=10)
            rss_loaded = rss_megabytes(server.pid)

            with Load(url, options.clients) as steady:
                time.sleep(options.steady_seconds)
            steady_result = steady.summary(options.steady_seconds)

            switch_seconds = []
            started = time.perf_counter()
            with Load(url, options.clients) as reloading:
                for version in range(2, 2 + options.switches):
                    added = time.perf_counter()
                    add_version(repository, version)
                    while served_versions(url) != [version]:
                        time.sleep(0.02)
                    switch_seconds.append(round(time.perf_counter() - added, 2))
                    shutil.rmtree(repository / "mnist_convnet" / str(version - 1))
            reloading_seconds = time.perf_counter() - started
            rss_after = rss_megabytes(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    return {
        "models": models,
        "clients": options.clients,
        "poll_seconds": options.poll_seconds,
        "rss_mb_all_models_loaded": round(rss_loaded, 1),
        "rss_mb_after_switches": round(rss_after, 1),
        "steady": steady_result,
        "reloading": reloading.summary(reloading_seconds) | {"switches": options.switches},
        "switch_seconds": switch_seconds,
    }


def markdown_report(results: dict[str, Any]) -> str:
    steady, reloading = results["steady"], results["reloading"]
    lines = [
        f"Hot reload at {results['clients']} clients (`python -m bench.reload`), poll {results['poll_seconds']} s, "
        f"serving {', '.join(results['models'])}:",
        "",
        "| phase | requests | req/s | p50 | p99 | max | failed |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, phase in (("no load in progress", steady), (f"{reloading['switches']} switches", reloading)):
        lines.append(
            f"| {name} | {phase['requests']:,} | {phase['requests_per_second']:,} | {phase['p50_ms']} ms | "
            f"{phase['p99_ms']} ms | {phase['max_ms']} ms | {phase['failed']} |"
        )
    lines += [
        "",
        f"Each switch (copy in → the new version alone AVAILABLE): {results['switch_seconds']} s. Resident memory "
        f"with every model loaded: {results['rss_mb_all_models_loaded']} MB; after the switches: "
        f"{results['rss_mb_after_switches']} MB.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reload", description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=REPOSITORY_ROOT / "bench" / "results")
    options = parser.parse_args(argv)
    results = measure(options)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "reload.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown_report(results)
    (options.out / "reload.md").write_text(report)
    print(report)
    return 0 if results["reloading"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
