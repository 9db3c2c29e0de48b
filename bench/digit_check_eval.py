"""How well does a version tell digits from everything else? The candidates of the "not a digit" score, measured.

    python -m bench.digit_check_eval                          # the committed convnet: base version vs newest
    python -m bench.digit_check_eval --count 300 --json bench/results/digit_check.json

Every image goes through the service's own normaliser first (`service.images.file_to_mnist`), as a request would:
MNIST validation and test digits (as 28x28 arrays), digits as clients send them (bench/preprocess_eval.py's
forms), and the non-digit sets of bench/nondigits.py (never trained on). For each model and each candidate score:

    msp       the largest calibrated softmax probability
    energy    T·logsumexp(logits / T), the negative free energy
    maha      minus the smallest Mahalanobis distance of the Dense-64 features to a class mean (class means and a
              shared covariance fitted on the training digits)
    energy+ink  energy, and any file whose normalised digit kept less than 70% of its drawn ink is flagged
              (what the service serves: service/digit_check.py)

the threshold is chosen on the validation digits exactly as training does (the largest that flags at most 0.9% of
them), and the table gives the AUROC (digits against all non-digits, on the raw score), the share of digits
flagged per set, and the share of non-digits flagged per set. The served check is the newest version's
`energy+ink` row (its threshold is the card's: the same rule on the same validation digits). A non-digit the
normaliser refuses outright (422 blank_image) counts as flagged: the client is told it is not a digit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from bench import nondigits, preprocess_eval  # noqa: E402
from models import digit_check  # noqa: E402
from models.contract import CARD_PATH, version_numbers  # noqa: E402
from service import images  # noqa: E402
from service.digit_check import MIN_INK_KEPT  # noqa: E402
from service.errors import ServiceError  # noqa: E402

DRAWN_FORMS = ("canvas_rgba", "inverted_offcentre", "fat_marker", "tight_crop")  # digits as apps send them
PHOTO_FORMS = ("paper_photo", "marker_photo", "printed")
CANDIDATES = ("msp", "energy", "maha", "energy+ink")
FLAG_SHARE = 0.009  # python -m training.not_a_digit's default


def normalised(samples: list[preprocess_eval.Sample]) -> tuple[np.ndarray, np.ndarray, int]:
    """The samples through the service's normaliser: the 28x28 digits, the share of ink each kept, and how many
    it refused."""
    kept, shares, refused = [], [], 0
    for sample in samples:
        try:
            result = images.file_to_normalised(
                sample.data, max_pixels=preprocess_eval.MAX_PIXELS, preprocess=sample.preprocess
            )
        except ServiceError:
            refused += 1
            continue
        kept.append(result.digit)
        shares.append(result.ink_kept)
    return np.array(kept, dtype=np.uint8).reshape(-1, 28, 28), np.array(shares), refused


def render_sets(count: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Every evaluation set, normalised: name → (images, ink kept, refused)."""
    digits, labels = preprocess_eval.load_mnist_test()
    chosen = np.random.default_rng(seed).permutation(len(digits))[:count]
    sets = {}
    for form in (*DRAWN_FORMS, *PHOTO_FORMS):
        started = time.perf_counter()
        sets[f"digits/{form}"] = normalised(
            list(preprocess_eval.samples_of(form, digits[chosen], labels[chosen], seed))
        )
        print(f"  digits/{form}: {len(sets[f'digits/{form}'][0])} in {time.perf_counter() - started:.0f} s", flush=True)
    for name in nondigits.SETS:
        sets[f"non-digits/{name}"] = normalised(list(nondigits.samples(name, count, seed)))
        print(f"  non-digits/{name}: {count}, refused {sets[f'non-digits/{name}'][2]}", flush=True)
    return sets


class Scorer:
    """A version's Keras model, as logits and Dense-64 features, with the Mahalanobis statistics of its training
    digits."""

    def __init__(self, version_folder: Path, train_digits: np.ndarray, train_labels: np.ndarray) -> None:
        import keras

        self.card = json.loads((version_folder / CARD_PATH).read_text())
        model = keras.models.load_model(version_folder / "assets.extra" / "model.keras")
        classifier = model.layers[-1]
        self._features = keras.Model(model.inputs, classifier.input)
        self._kernel, self._bias = (keras.ops.convert_to_numpy(weight) for weight in classifier.weights)
        calibration = self.card.get("calibration")
        self.temperature = calibration["temperature"] if calibration else None
        features, _ = self.features_and_logits(train_digits)
        self.means = np.stack([features[train_labels == digit].mean(axis=0) for digit in range(10)])
        centred = features - self.means[train_labels]
        covariance = centred.T @ centred / len(features)
        self.precision = np.linalg.pinv(covariance + 1e-6 * np.eye(len(covariance)))

    def features_and_logits(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = (digits.astype(np.float32) / 255)[..., np.newaxis]
        features = np.asarray(self._features.predict(batch, batch_size=512, verbose=0), dtype=np.float64)
        return features, features @ self._kernel + self._bias

    def scores(self, candidate: str, digits: np.ndarray) -> np.ndarray:
        if not len(digits):
            return np.zeros(0)
        features, logits = self.features_and_logits(digits)
        if candidate == "maha":
            offsets = features[:, None, :] - self.means[None]
            return -np.einsum("nci,ij,ncj->nc", offsets, self.precision, offsets).min(axis=1)
        return digit_check.raw_score(candidate, logits, self.temperature or 1.0)


def evaluate(scorer: Scorer, candidate: str, validation: np.ndarray, test: np.ndarray, sets: dict) -> dict:
    validation_scores = scorer.scores(candidate.removesuffix("+ink"), validation)
    threshold, flagged = digit_check.flagging_threshold(validation_scores, FLAG_SHARE)  # as training chooses it
    row: dict = {"validation": flagged}
    test_scores = scorer.scores(candidate.removesuffix("+ink"), test)
    row["digits/mnist_test"] = float(np.mean(test_scores < threshold))
    non_digit_scores = []
    for name, (normalised_images, ink_kept, refused) in sets.items():
        scores = scorer.scores(candidate.removesuffix("+ink"), normalised_images)
        if candidate.endswith("+ink"):
            scores = np.where(ink_kept < MIN_INK_KEPT, -np.inf, scores)
        flagged = int(np.sum(scores < threshold))
        if name.startswith("non-digits/"):
            flagged += refused
            non_digit_scores.append(np.concatenate([scores, np.full(refused, -np.inf)]))
        row[name] = flagged / (len(scores) + refused)
    negatives = np.concatenate(non_digit_scores)
    row["non-digits (all)"] = float(np.mean(negatives < threshold))
    row["auroc"] = digit_check.auroc(test_scores, np.where(np.isfinite(negatives), negatives, -1e30))
    drawn = [row[f"digits/{form}"] for form in DRAWN_FORMS]
    row["digits drawn (mean)"] = float(np.mean(drawn))
    return row


def markdown(results: dict[str, dict]) -> str:
    columns = list(next(iter(results.values())))
    lines = ["| set | " + " | ".join(results) + " |", "|---|" + "---:|" * len(results)]
    for column in columns:
        cells = []
        for row in results.values():
            value = row[column]
            cells.append(f"{value:.3f}" if column == "auroc" else f"{100 * value:.1f}%")
        lines.append(f"| {column} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.digit_check_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPOSITORY_ROOT / "models" / "mnist_convnet")
    parser.add_argument(
        "--versions",
        help="comma-separated versions to compare (default: the one the newest was fine-tuned from, and the newest)",
    )
    parser.add_argument("--count", type=int, default=300, help="images per digit form and per non-digit set")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from training.data import load_mnist

    versions = [int(v) for v in arguments.versions.split(",")] if arguments.versions else None
    if versions is None:
        newest = version_numbers(arguments.model)[-1]
        card = json.loads((arguments.model / str(newest) / CARD_PATH).read_text())
        base = (card.get("fine_tuning") or {}).get("from_version")
        versions = [base, newest] if base else [newest]
    data = load_mnist(None)
    cut = len(data.x_train) - 5_000
    validation, test = data.x_train[cut:], data.x_test
    print(f"rendering {arguments.count} images per set through the normaliser", flush=True)
    sets = render_sets(arguments.count, arguments.seed)
    results: dict[str, dict] = {}
    for version in versions:
        scorer = Scorer(arguments.model / str(version), data.x_train[:cut], data.y_train[:cut])
        accuracy = float(np.mean(scorer.features_and_logits(test)[1].argmax(axis=1) == data.y_test))
        print(f"version {version}: MNIST test accuracy {accuracy:.4f}", flush=True)
        for candidate in CANDIDATES:
            results[f"v{version} {candidate}"] = evaluate(scorer, candidate, validation, test, sets)
    table = markdown(results)
    print(table)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(
            json.dumps({"versions": versions, "count": arguments.count, "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
