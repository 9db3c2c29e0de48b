"""python -m bench.image_cpu: the CPU one image costs on its way from a file to the 28x28 the model reads.

    python -m bench.image_cpu                       # this working tree
    python -m bench.image_cpu --baseline HEAD~3     # and a commit's code, side by side, in the same run

Two inputs, as apps send them: the benchmark's 140x140 greyscale PNG (a test digit, dark on white) and a 280x280
RGBA canvas PNG (pen strokes on transparent pixels, as a browser's canvas.toDataURL() makes it). For each, it
times `service.images.file_to_mnist` (the whole path: header checks, decoding, normalisation) and decoding alone,
as process CPU time per image (all threads), over `--count` different images, the median of `--repeats` rounds.

Each tree is measured in its own interpreter (cwd = the tree), one after the other, with the same files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.baseline import BaselineError, baseline_worktree
from bench.payloads import load_test_digits, png_bytes

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# The targets, per image: a 140x140 PNG and a 280x280 RGBA canvas.
TARGETS_MS = {"png_140": 0.5, "canvas_280_rgba": 1.0}

# Run in a fresh interpreter inside the tree being measured: argv[1] is the folder of input files.
MEASURE = r"""
import json, statistics, sys, time
from pathlib import Path
from service.images import file_to_mnist, open_file
from service.images.decode import load_image

MAX_PIXELS = 40_000_000
folder, repeats = Path(sys.argv[1]), int(sys.argv[2])
results = {}
for kind in ("png_140", "canvas_280_rgba"):
    files = [path.read_bytes() for path in sorted(folder.glob(kind + "-*.png"))]
    for data in files[:20]:
        file_to_mnist(data, max_pixels=MAX_PIXELS)  # warm-up: imports, caches, thread pools

    def per_image(step):
        rounds = []
        for _ in range(repeats):
            start = time.process_time()
            for data in files:
                step(data)
            rounds.append(1000 * (time.process_time() - start) / len(files))
        return statistics.median(rounds)

    def decode_only(data):
        load_image(open_file(data, max_pixels=MAX_PIXELS), max_pixels=MAX_PIXELS)

    results[kind] = {
        "images": len(files),
        "total_ms": per_image(lambda data: file_to_mnist(data, max_pixels=MAX_PIXELS)),
        "decode_ms": per_image(decode_only),
    }
print(json.dumps(results))
"""


def write_inputs(folder: Path, count: int) -> None:
    """`count` files of each kind, made from the first MNIST test digits."""
    from bench.preprocess_eval import form_canvas_rgba

    digits = load_test_digits(count)
    rng = np.random.default_rng(20261206)
    for index, digit in enumerate(digits):
        (folder / f"png_140-{index:04d}.png").write_bytes(png_bytes(digit))
        (folder / f"canvas_280_rgba-{index:04d}.png").write_bytes(form_canvas_rgba(digit, 0, rng).data)


def measure(tree: Path, folder: Path, repeats: int) -> dict[str, dict[str, float]]:
    completed = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), str(repeats)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"measuring {tree} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, dict[str, float]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def table(columns: dict[str, dict[str, dict[str, float]]]) -> str:
    names = list(columns)
    lines = [
        "| input | step | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |"),
        "|---|---|" + "--:|" * (len(names) + (len(names) == 2)),
    ]
    for kind in TARGETS_MS:
        for step, label in (("total_ms", "file to 28x28"), ("decode_ms", "decoding alone")):
            values = [columns[name][kind][step] for name in names]
            cells = " | ".join(f"{value:.2f} ms" for value in values)
            ratio = f" | {values[1] / values[0]:.2f}×" if len(values) == 2 else ""
            lines.append(f"| {kind} | {label} | {cells}{ratio} |")
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.image_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="different images of each kind (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over them; the median is reported")
    parser.add_argument("--baseline", metavar="REF", help="also measure this commit's code, in the same run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="image-cpu-") as temporary:
        folder = Path(temporary)
        write_inputs(folder, arguments.count)
        columns = {}
        try:
            if arguments.baseline:
                with baseline_worktree(REPOSITORY_ROOT, arguments.baseline) as baseline:
                    columns[f"{arguments.baseline} ({baseline.commit[:7]})"] = measure(
                        baseline.worktree, folder, arguments.repeats
                    )
        except BaselineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        columns["this tree"] = measure(REPOSITORY_ROOT, folder, arguments.repeats)
    print(table(columns))
    current = columns["this tree"]
    for kind, target in TARGETS_MS.items():
        verdict = "met" if current[kind]["total_ms"] <= target else "not met"
        print(f"{kind}: {current[kind]['total_ms']:.2f} ms per image (target ≤ {target} ms: {verdict})")
    if arguments.json:
        arguments.json.write_text(json.dumps(columns, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
