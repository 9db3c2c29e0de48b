"""Whether an input is a digit: a version's raw score (the 11th column its runtime answers) turned into
`digit_score` and `is_digit`, with the version's threshold or the operator's (DIGIT_SERVE_DIGIT_THRESHOLD).

`digit_score` is the share of MNIST validation digits that scored lower than the input (models/digit_check.py),
so it reads the same for every model: 0.004 means "less digit-like than 99.6% of real digits". A version exported
without the check answers `is_digit: null`, and /model/summary says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models import digit_check
from service.repository import ModelVersion

# A file whose normalised digit kept less than this share of the drawn ink held more than one thing (a word, a
# face whose outline was dropped as a frame, several digits): it is not a digit, whatever the model says of the
# piece it was shown. Digits sent as apps and photos send them keep all of it (bench/digit_check_eval.py).
MIN_INK_KEPT = 0.7

NO_CHECK_REASON = (
    "this version was exported without a digit check (its card has no digit_check); versions made by "
    "python -m training.not_a_digit have one"
)


@dataclass(frozen=True)
class DigitCheck:
    """A version's check: the map from its raw score to digit_score, and the threshold in force."""

    score: str
    quantiles: np.ndarray
    threshold: float
    threshold_source: Literal["card", "DIGIT_SERVE_DIGIT_THRESHOLD"]
    card_threshold: float
    shares: np.ndarray = field(init=False, repr=False)  # the quantiles' shares, computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "shares", np.linspace(0.0, 1.0, len(self.quantiles)))

    def judge(self, raw_scores: np.ndarray, ink_kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (n,) → digit_score (n,) float64 in [0, 1] and is_digit (n,) bool. An image normalised from a
        file that kept less than MIN_INK_KEPT of its ink scores 0."""
        scores = digit_check.digit_scores(raw_scores, self.quantiles, self.shares)
        if ink_kept is not None and (ink_kept < MIN_INK_KEPT).any():
            scores = np.where(ink_kept < MIN_INK_KEPT, 0.0, scores)
        return scores, scores >= self.threshold

    def describe(self) -> dict[str, Any]:
        return {
            "available": True,
            "score": self.score,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "card_threshold": self.card_threshold,
        }


def digit_check_of(model: ModelVersion, threshold_override: float | None) -> DigitCheck | None:
    """The version's check, or None when it was exported without one."""
    card = model.card.get("digit_check")
    if card is None:
        return None
    return DigitCheck(
        score=card["score"],
        quantiles=np.asarray(card["quantiles"], dtype=np.float64),
        threshold=card["threshold"] if threshold_override is None else threshold_override,
        threshold_source="card" if threshold_override is None else "DIGIT_SERVE_DIGIT_THRESHOLD",
        card_threshold=card["threshold"],
    )


@dataclass(frozen=True)
class Classified:
    """What the model said about a request's images: probabilities (n, 10) float32, and when the version has a
    digit check, each image's digit_score and is_digit (else None)."""

    probabilities: np.ndarray
    digit_scores: np.ndarray | None = None
    is_digit: np.ndarray | None = None
    raw_scores: np.ndarray | None = None  # the signature's own `score` (TF Serving's digit_check answers it)


def classified(answer: np.ndarray, check: DigitCheck | None, ink_kept: np.ndarray | None = None) -> Classified:
    """A runtime's answer for a request's rows ((n, 10), or (n, 11) with the raw score last) as a Classified;
    `ink_kept`: each image's share of its file's drawn ink, when it came from a file."""
    if answer.shape[1] == 10:
        return Classified(answer)
    probabilities = np.ascontiguousarray(answer[:, :10])  # JSON encoders and protobufs want contiguous rows
    if check is None:
        return Classified(probabilities)
    raw = np.ascontiguousarray(answer[:, 10])
    scores, is_digit = check.judge(raw, ink_kept)
    return Classified(probabilities, scores, is_digit, raw)
