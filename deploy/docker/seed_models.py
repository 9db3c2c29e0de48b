"""Seed the Compose stack's model repository (the `models` volume) with the model versions baked into this image.

docker-compose.yml runs this once, as the one-shot service `models`, before any `api` replica or the trainer
starts. It copies each version folder of the image's repository (/app/models) that the volume lacks, and
refreshes the card schema and the repository's README, which belong to the image's code. A version is copied
under a `.tmp-` name and renamed into place, so a replica polling the volume never sees half of one. It never
deletes, overwrites or edits a version: what the trainer wrote stays, and a changed model gets a new number.

Why not Docker's own copy of the image's folder into an empty volume: Docker makes that copy when a container
is created, and Compose creates the replicas of a service concurrently, so two replicas copying into one new
volume collided ("failed to mkdir .../mnist_no_maxpool: file exists"); and it happens only while the volume is
empty, so the versions a newer image brings never reached a volume made by an older one.

Standard library and models/contract.py only (the image installs the contract into its virtualenv).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from models.contract import CARD_SCHEMA_FILE, TEMPORARY_PREFIX, is_model_folder, version_numbers

SOURCE = Path(os.environ.get("DIGIT_SERVE_SEED_SOURCE", "/app/models"))
TARGET = Path(os.environ.get("DIGIT_SERVE_SEED_TARGET", "/models"))
REPOSITORY_FILES = (CARD_SCHEMA_FILE, "README.md")


def replace_file(source: Path, target: Path) -> bool:
    """Put `source` at `target` atomically, unless it is there already; whether anything changed."""
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return False
    staging = target.with_name(f"{TEMPORARY_PREFIX}{target.name}")
    shutil.copyfile(source, staging)
    staging.replace(target)
    return True


def copy_version(source: Path, target: Path) -> None:
    """Copy a version folder whole under a temporary name in the target model folder, then rename it into place."""
    staging = target.with_name(f"{TEMPORARY_PREFIX}seed-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a seeding that was killed half-way
    shutil.copytree(source, staging)
    staging.rename(target)


def seed(source: Path, target: Path) -> list[str]:
    """Bring the image's versions and repository files into `target`; what was added, as `name/version` lines."""
    added = [
        name for name in REPOSITORY_FILES if (source / name).is_file() and replace_file(source / name, target / name)
    ]
    for model in sorted(folder for folder in source.iterdir() if is_model_folder(folder)):
        (target / model.name).mkdir(exist_ok=True)
        for version in version_numbers(model):
            destination = target / model.name / str(version)
            if not destination.exists():
                copy_version(model / str(version), destination)
                added.append(f"{model.name}/{version}")
    return added


def main() -> int:
    if not TARGET.is_dir():
        print(f"seed_models: {TARGET} is not a folder: mount the models volume there", file=sys.stderr)
        return 1
    try:
        added = seed(SOURCE, TARGET)
    except OSError as error:
        print(f"seed_models: cannot seed {TARGET} from {SOURCE}: {error}", file=sys.stderr)
        return 1
    present = {model.name: version_numbers(model) for model in sorted(TARGET.iterdir()) if is_model_folder(model)}
    print(f"seed_models: added {', '.join(added) if added else 'nothing'}; {TARGET} holds {present}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
