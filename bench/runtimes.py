"""python -m bench.runtimes: the model call alone, per runtime, in one process: no HTTP, no JSON, one thread each.

    python -m bench.runtimes                              # the SavedModel and LiteRT runtimes of the service
    python -m bench.runtimes --onnx /tmp/convnet.onnx     # and ONNX Runtime on a converted copy (not served)

It loads the committed default model's latest version through the service's own runtimes (service/runtimes/),
checks that they agree on 1,024 MNIST test digits, and times one call of batch 1 (µs per call) and of batch 64
(images/s), the median of --repeats rounds. ONNX Runtime is not a runtime of the service (see the README); to
measure it, convert the SavedModel with tf2onnx and install onnxruntime beside the dev virtualenv:

    pip install --target /tmp/t2o --no-deps tf2onnx onnx onnxruntime
    PYTHONPATH=/tmp/t2o python -m tf2onnx.convert --saved-model models/mnist_convnet/2 --output /tmp/convnet.onnx
    PYTHONPATH=/tmp/t2o python -m bench.runtimes --onnx /tmp/convnet.onnx
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
from service.runtimes import RuntimeOptions, load_runtime

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPOSITORY_ROOT / "models" / "mnist_convnet"


def onnx_classifier(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def classify(pixels: np.ndarray) -> np.ndarray:
        result: np.ndarray = session.run(["probabilities"], {"image": pixels[..., np.newaxis]})[0]
        return result

    return classify


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
    parser.add_argument("--onnx", type=Path, help="also time ONNX Runtime on this converted model")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args(argv)

    version = locate_model(arguments.model, None, arguments.model.parent / "model_card.schema.json")
    options = RuntimeOptions(threads=1, max_batch_size=64)
    classifiers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        name: load_runtime(version, name, options).classify for name in ("savedmodel", "litert")
    }
    if arguments.onnx:
        classifiers["onnx"] = onnx_classifier(arguments.onnx)
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
