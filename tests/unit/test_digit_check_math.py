"""The numbers behind calibration and the "not a digit" score (models/digit_check.py), against brute force and
against data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from models import digit_check
from service.digit_check import MIN_INK_KEPT, DigitCheck, classified


def sampled(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): data that temperature explains exactly."""
    probabilities = digit_check.softmax(logits, temperature)
    return np.array([rng.choice(10, p=row) for row in probabilities])


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_fit_temperature_recovers_the_temperature_that_made_the_labels(true_temperature: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 10))
    labels = sampled(logits, true_temperature, rng)
    assert digit_check.fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_ece_is_small_for_calibrated_probabilities_and_large_for_overconfident_ones() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5000, 10))
    labels = sampled(logits, 1.0, rng)
    calibrated = digit_check.expected_calibration_error(digit_check.softmax(logits), labels)
    overconfident = digit_check.expected_calibration_error(digit_check.softmax(logits, 0.3), labels)
    assert calibrated < 0.03 < 0.1 < overconfident
    bins = digit_check.reliability_bins(digit_check.softmax(logits), labels)
    assert sum(count for _, _, count in bins) == 5000
    assert all(0 <= confidence <= 1 and 0 <= accuracy <= 1 for confidence, accuracy, _ in bins)


def test_temperature_scaling_never_changes_the_predicted_digit() -> None:
    logits = np.random.default_rng(2).normal(0, 4, (500, 10))
    for temperature in (0.2, 0.7, 3.0):
        assert np.array_equal(digit_check.softmax(logits, temperature).argmax(1), logits.argmax(1))


def test_auroc_is_the_share_of_pairs_ranked_right_with_ties_counting_half() -> None:
    rng = np.random.default_rng(3)
    positives = rng.integers(0, 6, 40).astype(float)  # small integers: many ties
    negatives = rng.integers(0, 5, 30).astype(float)
    pairs = positives[:, None] - negatives[None, :]
    brute_force = (np.sum(pairs > 0) + 0.5 * np.sum(pairs == 0)) / pairs.size
    assert digit_check.auroc(positives, negatives) == pytest.approx(brute_force)
    assert digit_check.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert digit_check.auroc(np.array([0.0]), np.array([1.0])) == 0.0


def test_energy_and_msp_rank_a_confident_row_above_a_flat_one() -> None:
    logits = np.array([[9.0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0.1] * 10])
    for method in digit_check.SCORES:
        confident, flat = digit_check.raw_score(method, logits, 0.8)
        assert confident > flat
    with pytest.raises(ValueError, match="unknown score"):
        digit_check.raw_score("vibes", logits, 1.0)


def test_digit_score_is_the_share_of_validation_digits_scoring_lower() -> None:
    validation = np.random.default_rng(4).normal(10, 2, 5000)
    quantiles = np.array(digit_check.score_quantiles(validation))
    probes = np.array([-100.0, 6.0, 10.0, 14.0, 100.0])
    expected = [np.mean(validation < probe) for probe in probes]
    np.testing.assert_allclose(digit_check.digit_scores(probes, quantiles), expected, atol=0.002)


def test_the_threshold_flags_at_most_the_share_asked_for() -> None:
    scores = np.random.default_rng(5).random(5000)
    for share in (0.009, 0.01, 0.05):
        threshold, flagged = digit_check.flagging_threshold(scores, share)
        assert flagged == np.mean(scores < threshold) <= share
        assert flagged > share - 0.001  # and not needlessly fewer


def test_a_file_that_lost_most_of_its_ink_is_not_a_digit_whatever_the_model_says() -> None:
    check = DigitCheck("energy", np.linspace(0.0, 10.0, 11), 0.01, "card", 0.01)
    answer = np.zeros((3, 11), np.float32)
    answer[:, 0] = 1.0
    answer[:, 10] = [9.0, 9.0, 0.05]  # two digit-like raw scores, one not
    result = classified(answer, check, ink_kept=np.array([1.0, MIN_INK_KEPT / 2, 1.0]))
    assert result.is_digit is not None and result.digit_scores is not None
    assert result.is_digit.tolist() == [True, False, False]
    assert result.digit_scores[1] == 0.0 and result.digit_scores[0] == pytest.approx(0.9)
    assert result.probabilities.shape == (3, 10) and result.probabilities.flags.c_contiguous
    without_check = classified(answer, None)
    assert without_check.is_digit is None and without_check.digit_scores is None
