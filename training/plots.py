"""The card's companions for people: training curves, the confusion matrix, and a short report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.card import ModelCard


def write_training_curves(card: ModelCard, path: Path) -> None:
    history = [record.model_dump() for record in card.training.history]
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r["loss"] for r in history], marker="o", label="train")
    accuracy_axis.plot(epochs, [r["accuracy"] for r in history], marker="o", label="train")
    if history and "val_loss" in history[0]:
        loss_axis.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
        accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], marker="o", label="validation")
    loss_axis.set(title="loss", xlabel="epoch", yscale="log")
    accuracy_axis.set(title="accuracy", xlabel="epoch")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{card.name} v{card.version}: {card.training.recipe} recipe, {card.architecture.name}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_confusion_matrix(card: ModelCard, path: Path) -> None:
    matrix = np.array(card.evaluation.confusion_matrix)
    figure, axis = plt.subplots(figsize=(6, 5.5))
    shown = np.where(matrix > 0, np.log10(matrix + 1), 0)
    axis.imshow(shown, cmap="Blues")
    for row in range(10):
        for column in range(10):
            if matrix[row, column]:
                color = "white" if row == column else "black"
                axis.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=8, color=color)
    axis.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true")
    axis.set_title(f"test accuracy {card.evaluation.test_accuracy:.4f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_reliability_diagram(card: ModelCard, path: Path) -> None:
    """Accuracy against confidence per bin, on the MNIST test set, before and after temperature scaling."""
    calibration = card.calibration
    if calibration is None:
        return
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    panels = (
        (axes[0], calibration.reliability_before, f"softmax (T = 1): ECE {calibration.test_ece_before:.4f}"),
        (
            axes[1],
            calibration.reliability_after,
            f"served, T = {calibration.temperature:.3f}: ECE {calibration.test_ece_after:.4f}",
        ),
    )
    for axis, bins, title in panels:
        width = 1 / calibration.bins
        confidences = [row[0] for row in bins]
        accuracies = [row[1] for row in bins]
        axis.bar(confidences, accuracies, width=width * 0.9, color="#4c72b0", alpha=0.8, label="accuracy")
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        for confidence, accuracy, count in bins:
            axis.annotate(f"{int(count)}", (confidence, accuracy), ha="center", va="bottom", fontsize=7)
        axis.set(title=title, xlabel="confidence", xlim=(0, 1.02), ylim=(0, 1.08))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (MNIST test; numbers: images per bin)")
    axes[0].legend(loc="upper left")
    figure.suptitle(f"{card.name} v{card.version}: reliability diagram, {calibration.bins} bins")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(card: ModelCard, path: Path) -> None:
    evaluation = card.evaluation
    worst = sorted(evaluation.per_class, key=lambda item: item.recall)[:3]
    lines = [
        f"# {card.name} version {card.version}",
        "",
        f"- Created {card.created_at.isoformat(timespec='seconds')}, architecture `{card.architecture.name}` "
        f"({card.architecture.total_params:,} parameters), recipe `{card.training.recipe}`, seed {card.training.seed}.",
        f"- {card.training.description}",
        f"- Data: {card.data.source} ({card.data.train_count:,} train, {card.data.validation_count:,} validation, "
        f"{card.data.test_count:,} test), sha256 `{card.data.sha256[:16]}…`.",
        f"- **Test accuracy {evaluation.test_accuracy:.4f}**, test loss {evaluation.test_loss:.4f}; "
        f"{card.training.epochs_run} epochs"
        + (f", best epoch {card.training.best_epoch}" if card.training.best_epoch else "")
        + f"; {card.training.wall_time_seconds:.0f} s wall time.",
        "- Weakest recall: " + ", ".join(f"{item.label}: {item.recall:.4f}" for item in worst) + ".",
        "",
        "![training curves](training_curves.png)",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]
    path.write_text("\n".join(lines))
