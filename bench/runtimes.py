"""python -m bench.runtimes: the model call alone, per runtime, in one process: no HTTP, no JSON, one thread each.

    python -m bench.runtimes                              # mnist_convnet's latest version
    python -m bench.runtimes --model models/mnist_no_maxpool

It loads the model's latest version through each of the service's runtimes (service/runtimes/: the SavedModel,
and the exported LiteRT and ONNX copies), checks that they agree on 1,024 MNIST test digits, and times one call of
batch 1 (µs per call) and of batch 64 (images/s), the median of --repeats rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.payloads import load_test_digits
from service.repository import locate_model
from service.runtimes import RUNTIMES, RuntimeOptions, load_runtime

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPOSITORY_ROOT / "models" / "mnist_convnet"


def timed(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median seconds per call over `repeats` rounds of `calls` calls."""
    call()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model folder (default mnist_convnet)")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args(argv)

    version = locate_model(arguments.model, None, arguments.model.parent / "model_card.schema.json")
    options = RuntimeOptions(threads=1, max_batch_size=64)
    classifiers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        name: load_runtime(version, name, options).classify for name in RUNTIMES
    }
    pixels = load_test_digits(1024).astype(np.float32) / 255
    reference = classifiers["savedmodel"](pixels)
    print(f"{version.name} version {version.version}, one thread per runtime")
    print("| runtime | max difference vs SavedModel (1,024 digits) | batch 1: µs per call | batch 64: images/s |")
    print("|---|--:|--:|--:|")
    for name, classify in classifiers.items():
        answers = np.concatenate([classify(pixels[start : start + 64]) for start in range(0, len(pixels), 64)])
        difference = float(np.max(np.abs(answers - reference)))
        same = bool(np.array_equal(answers.argmax(axis=1), reference.argmax(axis=1)))
        single = timed(lambda classify=classify: classify(pixels[:1]), 2000, arguments.repeats)
        batch = timed(lambda classify=classify: classify(pixels[:64]), 200, arguments.repeats)
        agreement = f"{difference:.1e}" + ("" if same else " (digits differ)")
        print(f"| {name} | {agreement} | {single * 1e6:.0f} | {64 / batch:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
