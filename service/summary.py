"""/model/summary: what `model.summary()` printed in the seed, rebuilt from the model card (a reloaded SavedModel
has no summary), as JSON or as the Keras-style text table.
"""

from __future__ import annotations

from typing import Any

from service.digit_check import NO_CHECK_REASON, DigitCheck
from service.registry import LoadedVersion


def model_summary(loaded: LoadedVersion) -> dict[str, Any]:
    model = loaded.model
    card = model.card
    architecture = card["architecture"]
    signature = card["signature"]
    evaluation = card["evaluation"]
    training = card["training"]
    return {
        "model": {"name": model.name, "version": model.version},
        "architecture": architecture["name"],
        "layers": [
            {key: layer[key] for key in ("name", "type", "output_shape", "params")} for layer in architecture["layers"]
        ],
        "total_params": architecture["total_params"],
        "trainable_params": architecture["trainable_params"],
        "non_trainable_params": architecture["non_trainable_params"],
        "input": signature["input"],
        "output": _output(signature["output"], card.get("calibration")),
        "labels": signature["labels"],
        "metrics": {
            "test_accuracy": evaluation["test_accuracy"],
            "test_loss": evaluation["test_loss"],
            "recipe": training["recipe"],
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
            "trained_at": card["created_at"],
            "per_class": evaluation["per_class"],
        },
        "calibration": _calibration(card, model.name, model.version),
        "digit_check": _digit_check(card, loaded.digit_check),
    }


def _output(output: dict[str, Any], calibration: dict[str, Any] | None) -> dict[str, Any]:
    """The signature's output as the card describes it, saying so when the served probabilities are calibrated
    (versions exported before the export said it in the signature's own description)."""
    if calibration is None or "calibrated" in output["description"]:
        return output
    note = f"calibrated by temperature scaling (T = {calibration['temperature']:.3f})"
    return output | {"description": f"{output['description']}, {note}"}


def _calibration(card: dict[str, Any], name: str, version: int) -> dict[str, Any] | None:
    calibration = card.get("calibration")
    if calibration is None:
        return None
    return {
        "method": calibration["method"],
        "temperature": calibration["temperature"],
        "test_ece_before": calibration["test_ece_before"],
        "test_ece_after": calibration["test_ece_after"],
        "reliability_diagram": f"/models/{name}/versions/{version}/assets/reliability_diagram.png",
    }


def _digit_check(card: dict[str, Any], check: DigitCheck | None) -> dict[str, Any]:
    recorded = card.get("digit_check")
    if check is None or recorded is None:
        return {"available": False, "reason": NO_CHECK_REASON}
    return check.describe() | {
        "method": recorded["description"],
        "validation_flagged": recorded["validation_flagged"],
        "test_flagged": recorded["test_flagged"],
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The table Keras prints, followed by the totals and the model's test metrics."""
    rows = [
        (f"{layer['name']} ({layer['type']})", _shape(layer["output_shape"]), f"{layer['params']:,}")
        for layer in summary["layers"]
    ]
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(row[column]) for row in [header, *rows]) + 2 for column in range(3)]

    def line(cells: tuple[str, str, str]) -> str:
        return (
            "│ "
            + " │ ".join(
                cell.rjust(width - 2) if column == 2 else cell.ljust(width - 2)
                for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
            + " │"
        )

    rule = "─" * (sum(widths) + 4)
    model = summary["model"]
    metrics = summary["metrics"]
    lines = [
        f'Model: "{model["name"]}" version {model["version"]} ({summary["architecture"]})',
        rule,
        line(header),
        rule,
        *(line(row) for row in rows),
        rule,
        f" Total params: {summary['total_params']:,} ({_size(summary['total_params'])})",
        f" Trainable params: {summary['trainable_params']:,} ({_size(summary['trainable_params'])})",
        f" Non-trainable params: {summary['non_trainable_params']:,} ({_size(summary['non_trainable_params'])})",
        f" Test accuracy: {metrics['test_accuracy']:.4f}, test loss: {metrics['test_loss']:.4f} "
        f"({metrics['recipe']} recipe, {metrics['epochs_run']} epochs)",
    ]
    calibration = summary.get("calibration")
    if calibration:
        lines.append(
            f" Calibrated: temperature {calibration['temperature']:.3f}, test ECE "
            f"{calibration['test_ece_before']:.4f} → {calibration['test_ece_after']:.4f}"
        )
    check = summary["digit_check"]
    if check["available"]:
        lines.append(
            f" Digit check: {check['score']} score, threshold {check['threshold']:.4f} ({check['threshold_source']})"
        )
    else:
        lines.append(f" Digit check: none ({check['reason']})")
    return "\n".join(lines) + "\n"


def _shape(shape: list[int | None]) -> str:
    return "(" + ", ".join("None" if size is None else str(size) for size in shape) + ")"


def _size(params: int) -> str:
    """float32 bytes, as Keras reports them."""
    size = params * 4
    return f"{size / 1024:.2f} KB" if size >= 1024 else f"{size:.2f} B"
