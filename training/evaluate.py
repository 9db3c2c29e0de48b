"""Test-set metrics for the card: accuracy, loss, per-class precision and recall, the confusion matrix."""

from __future__ import annotations

import keras
import numpy as np

from training.card import ClassMetrics, Evaluation
from training.recipes import evaluation_dataset


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    loss, accuracy = model.evaluate(evaluation_dataset(images, labels), verbose=0)
    predicted = np.argmax(model.predict(evaluation_dataset(images, labels), verbose=0), axis=1)
    matrix = confusion_matrix(labels, predicted)
    return Evaluation(
        test_accuracy=float(accuracy),
        test_loss=float(loss),
        per_class=per_class_metrics(matrix),
        confusion_matrix=matrix.tolist(),
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """Rows are the true digits, columns the predicted ones."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray) -> list[ClassMetrics]:
    correct = np.diag(matrix)
    predicted_counts = matrix.sum(axis=0)
    true_counts = matrix.sum(axis=1)
    return [
        ClassMetrics(
            label=str(digit),
            precision=float(correct[digit] / predicted_counts[digit]) if predicted_counts[digit] else 0.0,
            recall=float(correct[digit] / true_counts[digit]) if true_counts[digit] else 0.0,
            support=int(true_counts[digit]),
        )
        for digit in range(len(matrix))
    ]
