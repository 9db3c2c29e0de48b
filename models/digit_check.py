"""Calibration and the "not a digit" score, as plain numpy: the training job fits them, the benchmarks measure
them, and the service turns a version's raw score into `digit_score` with them. No TensorFlow.

- Temperature scaling (Guo et al., 2017): probabilities = softmax(logits / T), with T fitted on the validation
  split by minimising the negative log-likelihood. It changes confidences, never the predicted digit.
- The expected calibration error (ECE): confidence against accuracy in 15 equal-width bins.
- Raw scores, higher = more digit-like: the maximum calibrated softmax probability ("msp") and the negative
  free energy T·logsumexp(logits / T) ("energy", Liu et al., 2020).
- `digit_score`: a raw score mapped through the distribution of the validation digits' raw scores, so it reads
  the same for every model: the share of MNIST validation digits that score lower. 0.01 means "less digit-like
  than 99% of real digits"; the threshold is a share too (the card's default flags at most 1% of them).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
SCORES = ("msp", "energy")
CALIBRATION_BINS = 15
# The validation scores are kept as this many quantiles (enough to place a 1% threshold to a few hundredths).
QUANTILE_COUNT = 1001


def softmax(logits: FloatArray, temperature: float = 1.0) -> FloatArray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def logsumexp(values: FloatArray) -> FloatArray:
    values = np.asarray(values, dtype=np.float64)
    largest = values.max(axis=1)
    return largest + np.log(np.exp(values - largest[:, None]).sum(axis=1))


def negative_log_likelihood(logits: FloatArray, labels: npt.NDArray[np.integer], temperature: float) -> float:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return float(np.mean(logsumexp(scaled) - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: FloatArray, labels: npt.NDArray[np.integer]) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`: a log-spaced search from 0.05 to
    20, then a finer one around the best."""
    candidates = np.geomspace(0.05, 20, 241)
    best = min(candidates, key=lambda t: negative_log_likelihood(logits, labels, float(t)))
    finer = np.linspace(best / 1.03, best * 1.03, 61)
    return float(min(finer, key=lambda t: negative_log_likelihood(logits, labels, float(t))))


def expected_calibration_error(
    probabilities: FloatArray, labels: npt.NDArray[np.integer], bins: int = CALIBRATION_BINS
) -> float:
    """Σ over equal-width confidence bins of (share of images in the bin) × |accuracy − mean confidence|."""
    rows = reliability_bins(probabilities, labels, bins)
    return float(sum(count * abs(accuracy - confidence) for confidence, accuracy, count in rows) / len(labels))


def reliability_bins(
    probabilities: FloatArray, labels: npt.NDArray[np.integer], bins: int = CALIBRATION_BINS
) -> list[tuple[float, float, int]]:
    """Per non-empty bin: (mean confidence, accuracy, count), for the reliability diagram."""
    confidences, correct = confidence_and_correct(probabilities, labels)
    bin_of = np.minimum((confidences * bins).astype(np.int64), bins - 1)
    return [
        (
            float(confidences[bin_of == index].mean()),
            float(correct[bin_of == index].mean()),
            int((bin_of == index).sum()),
        )
        for index in range(bins)
        if (bin_of == index).any()
    ]


def confidence_and_correct(
    probabilities: FloatArray, labels: npt.NDArray[np.integer]
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == labels


def raw_score(method: str, logits: FloatArray, temperature: float) -> FloatArray:
    """The raw digit-likeness of each image from its logits (n, 10): higher = more digit-like."""
    if method == "msp":
        return softmax(logits, temperature).max(axis=1)
    if method == "energy":
        return temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature)
    raise ValueError(f"unknown score {method!r}; choose one of {', '.join(SCORES)}")


def score_quantiles(validation_scores: FloatArray, count: int = QUANTILE_COUNT) -> list[float]:
    """The validation digits' raw scores at `count` evenly spaced shares, 0 to 1: the map from raw score to
    digit_score."""
    return [
        float(value) for value in np.quantile(np.asarray(validation_scores, dtype=np.float64), np.linspace(0, 1, count))
    ]


def digit_scores(raw: FloatArray, quantiles: FloatArray, shares: FloatArray | None = None) -> FloatArray:
    """Raw scores → the share of validation digits scoring lower (0 below all of them, 1 above all of them),
    interpolated between the stored quantiles (`shares`: their evenly spaced shares, if already at hand)."""
    if shares is None:
        shares = np.linspace(0.0, 1.0, len(quantiles))
    return np.interp(raw, quantiles, shares, left=0.0, right=1.0)


def flagging_threshold(validation_scores: np.ndarray, share: float) -> tuple[float, float]:
    """The largest threshold that flags (score < threshold) at most `share` of the validation digits, and the
    share it flags: on digit_score (training) or on a raw score (the benchmark's candidates)."""
    ordered = np.sort(validation_scores)
    allowed = int(np.floor(share * len(ordered)))  # this many may be flagged
    threshold = float(ordered[allowed]) if allowed < len(ordered) else 1.0
    return threshold, float(np.mean(validation_scores < threshold))


def auroc(positives: FloatArray, negatives: FloatArray) -> float:
    """The probability that a random positive (digit) scores above a random negative (non-digit); ties count
    half (the Mann-Whitney U statistic)."""
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    values = np.concatenate([positives, negatives])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    average_ranks = np.cumsum(counts) - (counts - 1) / 2  # tied values share their ranks' mean
    positive_ranks = average_ranks[inverse[: len(positives)]].sum()
    return float((positive_ranks - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))
