"""The model repository on disk: which version to serve, and its model card checked against the schema.

No TensorFlow here: this module only reads folders and JSON, so its errors are cheap and precise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

CARD_PATH = Path("assets.extra") / "model_card.json"


class ModelLoadError(Exception):
    """The model cannot be served; the message names the path and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    card: dict[str, Any]


def find_version(model_dir: Path, pinned: int | None = None) -> tuple[int, Path]:
    """The pinned version's folder, or the highest one: folders named by positive integers, as in TF Serving."""
    if not model_dir.is_dir():
        raise ModelLoadError(model_dir, "no such model folder; expected models/<name>/ holding numbered versions")
    versions = sorted(
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0
    )
    if not versions:
        raise ModelLoadError(model_dir, "no version folders (1/, 2/, ...); train one with `python -m training`")
    if pinned is None:
        return versions[-1], model_dir / str(versions[-1])
    if pinned not in versions:
        raise ModelLoadError(model_dir / str(pinned), f"version {pinned} not found; available: {versions}")
    return pinned, model_dir / str(pinned)


def read_card(version_path: Path, schema_path: Path) -> dict[str, Any]:
    """Read the version's model card and validate it against the repository's card schema."""
    card_path = version_path / CARD_PATH
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(
            card_path, "missing model card; every version needs assets.extra/model_card.json"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(card_path, f"unreadable model card: {error}") from None
    try:
        schema = json.loads(schema_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(schema_path, f"unreadable model card schema: {error}") from None
    try:
        jsonschema.validate(card, schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ModelLoadError(card_path, f"model card does not match its schema at {where}: {error.message}") from None
    return card


def locate_model(model_dir: Path, pinned: int | None, schema_path: Path) -> ModelVersion:
    version, path = find_version(model_dir, pinned)
    card = read_card(path, schema_path)
    if card["version"] != version:
        raise ModelLoadError(path, f"the card says version {card['version']} but the folder is version {version}")
    return ModelVersion(name=model_dir.resolve().name, version=version, path=path, card=card)
