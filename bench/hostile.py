"""python -m bench.hostile: does one hostile client slow down everybody else? Three measurements, one server.

The service's limits exist so that no single client can take the server from the others. This module starts
one `python -m service` with its default limits and measures what a well-behaved client sees while another
client does the worst the limits still allow:

1. **An upload alone**: a 140x140 PNG digit as a multipart `file` (as bench.payloads builds it), sent N times
   one after another (default 40); p50, p99 and max latency. This is the reference.
2. **The same uploads beside the heaviest legal request**: another client, on its own connection, loops on a
   JSON `images_b64` of three images of 16383x2441, 16383x2441 and 8000x2500 pixels, a few black strokes on
   white: 99,981,806 pixels, just under the per-request limit of 100 MP, each file under the 40 MP one, and
   only kilobytes on the wire, so cheap to send and expensive to decode. The files are lossless WebP if the
   server accepts them, else PNG (the service refuses WebPs whose decoding would need more than
   MAX_DECODE_BYTES; the refusal is reported). Target: the upload's max latency stays within 2 s.
3. **/health/live beside slow clients**: three threads each trickle an endless header (1,000 bytes every 2 ms,
   reconnecting whenever the server closes, for up to 20 s), 50 connections send nothing, and 50 send a POST
   head declaring 100,000 bytes and then one byte per second. /health/live must keep answering promptly, and
   after 15 s the server should have closed all 100 (idle timeout 5 s; body timeout 10 s plus a second per
   16 KiB): a connection counts as closed when a read returns EOF or a reset.

Everything talks to 127.0.0.1 only. Results go to `<out>/hostile-<time>.{json,md}` and
`<out>/hostile-latest.{json,md}`, the server's output to `<out>/logs/service-hostile.log`, and the markdown is
printed. The server is stopped on every way out (bench.launcher's context manager).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shlex
import shutil
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
from PIL import Image

from bench.catalog import HOST, SERVERS
from bench.launcher import running_server
from bench.loadgen import percentile_ms
from bench.payloads import load_test_digits, multipart_body, png_bytes

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPOSITORY_ROOT / "bench" / "results"
SERVER = replace(SERVERS["service"], name="service-hostile", description="digit-serve, default limits")

HEAVY_IMAGE_SIZES = ((16383, 2441), (16383, 2441), (8000, 2500))
HEAVY_FORMATS = ("WEBP", "PNG")  # the first one the server accepts is sent
UPLOAD_MAX_MS = 2000.0
SAMPLE_CHARACTERS = 300
# Pauses that spread the well-behaved requests over the hostile load instead of bunching them at its start.
UPLOAD_INTERVAL_SECONDS, HEAVY_HEAD_START_SECONDS, HEALTH_SPREAD_SECONDS = 0.1, 0.5, 10.0
TRICKLE_THREADS, TRICKLE_CHUNK, TRICKLE_INTERVAL_SECONDS, TRICKLE_SECONDS = 3, b"a" * 1000, 0.002, 20.0
TRICKLE_HEAD = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Endless: "
IDLE_CONNECTIONS, SLOW_BODY_CONNECTIONS, CLOSE_CHECK_SECONDS = 50, 50, 15.0
SLOW_BODY_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


def latency_summary(latencies_ms: list[float], statuses: Counter[str]) -> dict[str, Any]:
    """Nearest-rank p50, p99 and max in milliseconds (None when nothing was measured), and the statuses."""
    ordered_seconds = sorted(latency / 1000 for latency in latencies_ms)
    percentiles = {"p50_ms": 50, "p99_ms": 99, "max_ms": 100}
    return {
        "requests": len(ordered_seconds),
        "statuses": dict(sorted(statuses.items())),
        **{name: percentile_ms(ordered_seconds, percent) or None for name, percent in percentiles.items()},
    }


def timed(send: Callable[[], httpx.Response], statuses: Counter[str]) -> float:
    """Send one request, count its status (or the name of its error), and return its latency in ms."""
    started = time.perf_counter()
    try:
        statuses[str(send().status_code)] += 1
    except httpx.HTTPError as error:
        statuses[type(error).__name__] += 1
    return (time.perf_counter() - started) * 1000


def timed_requests(send: Callable[[], httpx.Response], count: int, interval: float) -> dict[str, Any]:
    """Send `count` requests one after another, `interval` apart; their latencies and statuses."""
    latencies, statuses = [], Counter[str]()
    for _ in range(count):
        latencies.append(timed(send, statuses))
        time.sleep(interval)
    return latency_summary(latencies, statuses)


def inked_image(width: int, height: int, image_format: str) -> bytes:
    """A white image with a few black strokes, in the format: a few KB that decode to width x height pixels."""
    image = Image.new("L", (width, height), 255)
    for index in range(4):
        left = width // 3 + index * width // 12
        image.paste(0, (left, height // 4, left + width // 100, 3 * height // 4))
    image.paste(0, (width // 3, height // 4, 2 * width // 3, height // 4 + height // 40))
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 0, "method": 0} if image_format == "WEBP" else {}
    # As RGBA, the costliest mode to decode and convert within the limits (~1.1 s and 340 MB per 40 MP PNG).
    image.convert("RGBA").save(buffer, format=image_format, **options)
    return buffer.getvalue()


def choose_heavy_body(url: str) -> tuple[str, bytes, dict[str, str]]:
    """The heaviest request the server accepts: the first format whose body it answers 2xx (the last one if
    none), and what it answered for the formats it refused."""
    refused: dict[str, str] = {}
    for image_format in HEAVY_FORMATS:
        files = [inked_image(width, height, image_format) for width, height in HEAVY_IMAGE_SIZES]
        body = orjson.dumps({"images_b64": [base64.b64encode(data).decode() for data in files]})
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=120.0)
        if response.is_success:
            break
        refused[image_format] = f"{response.status_code} {response.text[:SAMPLE_CHARACTERS]}"
    return image_format, body, refused


class HeavyClient(threading.Thread):
    """Its own httpx client, sending the heavy request again and again until told to stop."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(name="heavy-client", daemon=True)
        self.url, self.body, self.stop = url, body, threading.Event()
        self.statuses: Counter[str] = Counter()
        self.durations_ms: list[float] = []

    def run(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=120.0) as client:
            while not self.stop.is_set():
                self.durations_ms.append(
                    timed(lambda: client.post(self.url, content=self.body, headers=headers), self.statuses)
                )

    def summary(self) -> dict[str, Any]:
        durations = self.durations_ms
        return {
            **latency_summary(durations, self.statuses),
            "mean_ms": sum(durations) / len(durations) if durations else None,
            "pixels": sum(width * height for width, height in HEAVY_IMAGE_SIZES),
            "body_bytes": len(self.body),
        }


def server_closed(connection: socket.socket, responses: Counter[str]) -> bool:
    """Whether the server has closed the connection (EOF or a reset), without waiting; a response it sent
    before closing is counted by its status code."""
    try:
        while data := connection.recv(65536, socket.MSG_DONTWAIT):
            if data.startswith(b"HTTP/"):
                responses[data.split(b" ", 2)[1].decode(errors="replace")] += 1
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def trickle_endless_header(address: tuple[str, int], stop: threading.Event, tally: dict[str, Any]) -> None:
    """Send an endless header a chunk every 2 ms; when the server closes, reconnect and start again."""
    deadline = time.monotonic() + TRICKLE_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with socket.create_connection(address) as connection:
                tally["connections"] += 1
                connection.sendall(TRICKLE_HEAD)
                while not stop.is_set() and time.monotonic() < deadline:
                    if server_closed(connection, tally["responses"]):
                        break
                    connection.sendall(TRICKLE_CHUNK)
                    time.sleep(TRICKLE_INTERVAL_SECONDS)
        except OSError:  # the server reset the connection while we were sending
            tally["resets"] += 1


class SlowConnections(threading.Thread):
    """Idle connections and slow-body ones; once a second it notes which the server has closed, and when, and
    sends one more body byte on each open slow one."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(name="slow-connections")
        self.stop, self.opened = threading.Event(), time.monotonic()
        self.sockets: dict[str, list[socket.socket]] = {"idle": [], "slow_body": []}
        self.closed_after: dict[socket.socket, float] = {}
        self.responses: Counter[str] = Counter()
        for _ in range(IDLE_CONNECTIONS):
            self.sockets["idle"].append(socket.create_connection(address))
        for _ in range(SLOW_BODY_CONNECTIONS):
            self.sockets["slow_body"].append(socket.create_connection(address))
            self.sockets["slow_body"][-1].sendall(SLOW_BODY_HEAD)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.sweep(feed=True)

    def sweep(self, *, feed: bool) -> None:
        for kind, sockets in self.sockets.items():
            for connection in (each for each in sockets if each not in self.closed_after):
                closed = server_closed(connection, self.responses)
                if not closed and feed and kind == "slow_body":
                    try:
                        connection.send(b"1")
                    except OSError:
                        closed = True
                if closed:
                    self.closed_after[connection] = time.monotonic() - self.opened

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"responses": dict(self.responses)}
        for kind, sockets in self.sockets.items():
            times = [self.closed_after[each] for each in sockets if each in self.closed_after]
            closed_between = [round(min(times), 1), round(max(times), 1)] if times else None
            summary[kind] = {"opened": len(sockets), "closed": len(times), "closed_between_s": closed_between}
            for each in sockets:
                each.close()
        return summary


def health_beside_slow_clients(base_url: str, address: tuple[str, int], count: int) -> dict[str, Any]:
    stop = threading.Event()
    tallies: list[dict[str, Any]] = [
        {"connections": 0, "resets": 0, "responses": Counter[str]()} for _ in range(TRICKLE_THREADS)
    ]
    trickles = [threading.Thread(target=trickle_endless_header, args=(address, stop, tally)) for tally in tallies]
    for thread in trickles:
        thread.start()
    try:
        slow = SlowConnections(address)
        slow.start()
        with httpx.Client(timeout=30.0) as client:
            health = timed_requests(lambda: client.get(base_url + "/health/live"), count, HEALTH_SPREAD_SECONDS / count)
        time.sleep(max(0.0, slow.opened + CLOSE_CHECK_SECONDS - time.monotonic()))
        slow.stop.set()
        slow.join()
        slow.sweep(feed=False)
    finally:
        stop.set()
        for thread in trickles:
            thread.join()
    endless = {
        "threads": TRICKLE_THREADS,
        **{key: sum(tally[key] for tally in tallies) for key in ("connections", "resets")},
        "responses": dict(sum((tally["responses"] for tally in tallies), Counter[str]())),
    }
    return {**health, "endless_headers": endless, "closed_after_s": CLOSE_CHECK_SECONDS, **slow.summary()}


def uploads_alone_and_beside_heavy(predict: str, count: int) -> dict[str, Any]:
    """Measurements 1 and 2: the uploads on one connection, first alone, then while the heavy client runs."""
    upload, upload_type = multipart_body(png_bytes(load_test_digits(1)[0]))
    with httpx.Client(timeout=60.0) as client:

        def send_upload() -> httpx.Response:
            return client.post(predict, content=upload, headers={"content-type": upload_type})

        alone = timed_requests(send_upload, count, UPLOAD_INTERVAL_SECONDS)
        heavy_format, heavy_body, refused = choose_heavy_body(predict)
        heavy = HeavyClient(predict, heavy_body)
        heavy.start()
        try:
            time.sleep(HEAVY_HEAD_START_SECONDS)
            beside_heavy = timed_requests(send_upload, count, UPLOAD_INTERVAL_SECONDS)
        finally:
            heavy.stop.set()
            heavy.join(timeout=180.0)
    return {
        "upload_alone": alone,
        "upload_beside_heavy": beside_heavy,
        "heavy": {"format": heavy_format, "refused_formats": refused, **heavy.summary()},
    }


def measure(options: argparse.Namespace) -> dict[str, Any]:
    """Start the server, take the three measurements, stop it; the results and the target."""
    with running_server(
        SERVER,
        repository_root=REPOSITORY_ROOT,
        model_directory=options.model_dir,
        log_directory=options.out / "logs",
        ready_timeout_seconds=180.0,
    ) as server:
        address = (HOST, int(server.base_url.rsplit(":", 1)[1]))
        uploads = uploads_alone_and_beside_heavy(server.base_url + "/predict", options.requests)
        health = health_beside_slow_clients(server.base_url, address, options.requests)
    log_text = server.log_path.read_text(errors="replace")
    worst = uploads["upload_beside_heavy"]["max_ms"]
    return {
        "server": {"command": server.command, "start_to_ready_s": server.start_to_ready_seconds},
        **uploads,
        "health_beside_slow_clients": health,
        "server_log": {"path": str(server.log_path), "tracebacks": log_text.count("Traceback")},
        "targets": [
            {
                "name": "upload max latency beside the heaviest legal request",
                "goal": f"≤ {UPLOAD_MAX_MS:,.0f} ms",
                "measured_ms": worst,
                "met": None if worst is None else worst <= UPLOAD_MAX_MS,
            }
        ],
    }


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def markdown_report(results: dict[str, Any]) -> str:
    heavy, health, log = results["heavy"], results["health_beside_slow_clients"], results["server_log"]
    rows = {
        "upload alone (140x140 PNG, multipart)": results["upload_alone"],
        "upload beside the heaviest legal request": results["upload_beside_heavy"],
        "/health/live beside endless headers, idle and slow-body connections": health,
    }
    verdicts = {True: "met", False: "**not met**", None: "not measured"}
    lines = [
        f"Command: `{results['command']}`",
        "",
        f"{results['started_at']}, one `python -m service` with its default limits, on 127.0.0.1.",
        "",
        "| measurement | requests | statuses | p50 ms | p99 ms | max ms |",
        "|---|--:|---|--:|--:|--:|",
        *(
            f"| {name} | {row['requests']} | {row['statuses']} | {ms(row['p50_ms'])} | {ms(row['p99_ms'])} "
            f"| {ms(row['max_ms'])} |"
            for name, row in rows.items()
        ),
        "",
        f"- Heavy requests: {heavy['pixels']:,} pixels in three {heavy['format']} files, {heavy['body_bytes']:,} "
        f"bytes; {heavy['requests']} sent, statuses {heavy['statuses']}, mean {ms(heavy['mean_ms'])} ms, "
        f"max {ms(heavy['max_ms'])} ms.",
        *(f"- {name} files refused: {answer}" for name, answer in heavy["refused_formats"].items()),
        f"- Endless headers: {health['endless_headers']}.",
        *(
            f"- {kind.replace('_', '-')} connections closed by the server within {health['closed_after_s']:g} s: "
            f"{health[kind]['closed']} of {health[kind]['opened']} (after {health[kind]['closed_between_s']} s)."
            for kind in ("idle", "slow_body")
        ),
        f"- Their responses before closing: {health['responses']}.",
        f"- Server log {log['path']}: {log['tracebacks']} tracebacks.",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|--:|---|",
        *(
            f"| {target['name']} | {target['goal']} | {ms(target['measured_ms'])} ms | {verdicts[target['met']]} |"
            for target in results["targets"]
        ),
    ]
    return "\n".join(lines) + "\n"


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = "hostile-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(results["started_at_epoch"]))
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(markdown_report(results))
    for path in paths:
        shutil.copyfile(path, out / f"hostile-latest{path.suffix}")
    return paths


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON and markdown")
    parser.add_argument("--requests", type=int, default=40, help="well-behaved requests per measurement (40)")
    parser.add_argument("--model-dir", default="models/mnist_convnet", help="model folder from the repo root")
    options = parser.parse_args(argv)
    if options.requests < 1:
        raise SystemExit("--requests must be positive")
    options.out = options.out.resolve()
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    started = time.time()
    results = {
        "schema_version": 1,
        "command": shlex.join(["python", "-m", "bench.hostile", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "started_at_epoch": started,
        **measure(options),
    }
    paths = write_outputs(results, options.out)
    print(markdown_report(results))
    print(f"wrote {paths[0]} and {paths[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
