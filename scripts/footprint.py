"""The memory of running api containers under load: `python scripts/footprint.py URL CONTAINER...` (make docker-test).

Sends a burst of mixed requests through URL (the load balancer): single JSON images, 140x140 PNG uploads and
batches of 64, from 16 clients for --seconds. Then prints, per container, the peak resident set of its PID 1 (the
service: VmHWM from /proc/1/status, read with docker exec) and its resident set now (VmRSS).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import httpx

from bench.payloads import json_batch_body, json_image_body, load_test_digits, png_bytes

CLIENTS = 16


def bodies() -> list[tuple[bytes, str]]:
    """The benchmark's bodies, made from MNIST test digits."""
    digits = load_test_digits(64)
    return [
        (json_image_body(digits[0]), "application/json"),
        (png_bytes(digits[1]), "image/png"),
        (json_batch_body(digits), "application/json"),
    ]


def burst(url: str, seconds: float) -> tuple[int, int]:
    """Requests answered 200 and others, from CLIENTS threads for `seconds`."""
    requests = bodies()
    counts = {"ok": 0, "other": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            index = offset
            while time.monotonic() < deadline:
                body, content_type = requests[index % len(requests)]
                index += 1
                status = http.post("/predict", content=body, headers={"Content-Type": content_type}).status_code
                with lock:
                    counts["ok" if status == 200 else "other"] += 1

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["ok"], counts["other"]


def memory_of(container: str) -> dict[str, int]:
    status = subprocess.run(
        ["docker", "exec", container, "cat", "/proc/1/status"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) // 1024 for name in ("VmHWM", "VmRSS")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("containers", nargs="+")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--label", default="api", help="what to call the image in the printed lines")
    arguments = parser.parse_args(argv)
    ok, other = burst(arguments.url, arguments.seconds)
    print(f"{arguments.label}: load burst of {arguments.seconds:.0f} s, {CLIENTS} clients: {ok} answered, {other} not")
    for container in arguments.containers:
        memory = memory_of(container)
        print(
            f"{arguments.label}: RSS of the service in {container[:12]} under load: peak {memory['VmHWM']} MB, "
            f"now {memory['VmRSS']} MB"
        )
    return 0 if other == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
