"""The model repository on disk: its models and versions, what a version folder holds, and its model card checked
against the schema.

No TensorFlow here: this module only reads folders and JSON, so its errors are cheap and precise. The rule for what
is a version folder is the repository's contract (models/contract.py), shared with the training job.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from models.contract import CARD_PATH, is_model_folder, version_numbers

# A version folder whose files changed within this long is checked again before it is loaded: a copy in progress.
SETTLE_SECONDS = 0.3

Fingerprint = tuple[tuple[str, int, int], ...]


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


@dataclass(frozen=True)
class VersionFolder:
    """A version folder as one scan saw it: `settled` once its files stopped changing."""

    path: Path
    fingerprint: Fingerprint
    settled: bool


def find_version(model_dir: Path, pinned: int | None = None) -> tuple[int, Path]:
    """The pinned version's folder, or the highest one: folders named by positive integers, as in TF Serving."""
    if not model_dir.is_dir():
        raise ModelLoadError(model_dir, "no such model folder; expected models/<name>/ holding numbered versions")
    versions = version_numbers(model_dir)
    if not versions:
        raise ModelLoadError(model_dir, "no version folders (1/, 2/, ...); train one with `python -m training`")
    if pinned is None:
        return versions[-1], model_dir / str(versions[-1])
    if pinned not in versions:
        raise ModelLoadError(model_dir / str(pinned), f"version {pinned} not found; available: {versions}")
    return pinned, model_dir / str(pinned)


def model_folders(repository: Path) -> dict[str, Path]:
    """Every model of the repository: its sub-folders that hold at least one version folder."""
    try:
        entries = sorted(repository.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {entry.name: entry for entry in entries if is_model_folder(entry)}


def scan_versions(model_dir: Path, known: dict[int, Fingerprint], *, settle: bool) -> dict[int, VersionFolder]:
    """The version folders of a model, each with its fingerprint. A folder that is new or changed since `known`
    and was written to in the last SETTLE_SECONDS is fingerprinted again after a pause: if it changed meanwhile
    (a copy in progress) it is not settled, and the next scan looks again."""
    folders = {}
    for version in version_numbers(model_dir):
        path = model_dir / str(version)
        first, newest = fingerprint(path)
        settled = True
        if settle and known.get(version) != first and time.time() - newest < SETTLE_SECONDS:
            time.sleep(SETTLE_SECONDS)
            settled = fingerprint(path)[0] == first
        folders[version] = VersionFolder(path, first, settled)
    return folders


def fingerprint(version_path: Path) -> tuple[Fingerprint, float]:
    """Every file under the folder with its size and modification time, and the newest of those times."""
    entries = []
    newest = 0.0
    for directory, _, files in os.walk(version_path):
        for file in files:
            path = os.path.join(directory, file)
            try:
                status = os.stat(path)
            except OSError:
                continue  # removed while we looked: the fingerprint differs anyway
            entries.append((os.path.relpath(path, version_path), status.st_size, status.st_mtime_ns))
            newest = max(newest, status.st_mtime_ns / 1e9)
    return tuple(sorted(entries)), newest


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


def read_version(name: str, version: int, path: Path, schema_path: Path) -> ModelVersion:
    """A version folder with its card read and checked against the folder it is in."""
    card = read_card(path, schema_path)
    if card["version"] != version:
        raise ModelLoadError(path, f"the card says version {card['version']} but the folder is version {version}")
    return ModelVersion(name=name, version=version, path=path, card=card)


def locate_model(model_dir: Path, pinned: int | None, schema_path: Path) -> ModelVersion:
    version, path = find_version(model_dir, pinned)
    return read_version(model_dir.resolve().name, version, path, schema_path)
