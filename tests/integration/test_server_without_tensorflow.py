"""The service without TensorFlow: what the slim image runs. An import hook forbids tensorflow (and keras, h5py,
matplotlib) in the server process; the LiteRT runtime serves the exported model.tflite of the committed versions
(and the ONNX runtime their model.onnx), and an older version without that file is refused with a line that says
why."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import COMMITTED_MODEL, REPOSITORY_ROOT, VERSION
from tests.integration.conftest import ServerProcess, local_only, start_server, start_service, wait_until_ready

pytestmark = local_only

FORBIDDEN = ("tensorflow", "keras", "h5py", "matplotlib")

# Installed by Python at start-up (sitecustomize) in the server process only.
BLOCKER = f"""
import importlib.abc
import os
import sys

FORBIDDEN = {FORBIDDEN!r}


class ForbidHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            with open(os.environ["FORBIDDEN_IMPORTS_LOG"], "a") as attempts:
                attempts.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (forbidden by the test)", name=name)
        return None


sys.meta_path.insert(0, ForbidHeavyImports())
"""


def environment(tmp_path: Path, runtime: str = "litert") -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(BLOCKER)
    return {
        "PYTHONPATH": f"{hook}:{REPOSITORY_ROOT}",
        "DIGIT_SERVE_RUNTIME": runtime,
        "FORBIDDEN_IMPORTS_LOG": str(tmp_path / "forbidden-imports.log"),
    }


@pytest.fixture(scope="module", params=["litert", "onnx"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def slim_folder(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Path:
    return tmp_path_factory.mktemp(f"without-tensorflow-{runtime}")


@pytest.fixture(scope="module")
def slim_server(slim_folder: Path, runtime: str) -> Iterator[ServerProcess]:
    folder = slim_folder
    server = start_server(
        COMMITTED_MODEL, folder / "server.log", "--model-version", VERSION, env=environment(folder, runtime)
    )
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


def png_of(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((140, 140)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_hook_really_forbids_tensorflow(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env=environment(tmp_path), capture_output=True, text=True
    )
    assert completed.returncode != 0 and "forbidden by the test" in completed.stderr
    assert (tmp_path / "forbidden-imports.log").read_text() == "tensorflow\n"


def test_serves_digits_without_tensorflow(
    slim_server: ServerProcess, slim_folder: Path, runtime: str, mnist_sample: dict[str, np.ndarray]
) -> None:
    images, labels = mnist_sample["x_test"], mnist_sample["y_test"]
    with httpx.Client(base_url=slim_server.url, timeout=30) as client:
        batch = client.post("/predict", json={"images": images[:32].tolist()})
        upload = client.post("/predict", content=png_of(images[0]), headers={"Content-Type": "image/png"})
        summary = client.get("/model/summary").json()
    assert batch.status_code == 200, batch.text
    predicted = [row["digit"] for row in batch.json()["predictions"]]
    assert np.mean(np.array(predicted) == labels[:32]) >= 0.9
    assert upload.status_code == 200 and upload.json()["predictions"][0]["digit"] == labels[0]
    assert summary["model"]["version"] == int(VERSION)
    assert f"with the {runtime} runtime" in slim_server.log()
    # Not one attempt to import them, from the start of the process to the last answer.
    attempts = slim_folder / "forbidden-imports.log"
    assert not attempts.exists(), attempts.read_text()


@pytest.mark.parametrize(("runtime", "file"), [("litert", "LiteRT"), ("onnx", "ONNX")])
def test_a_version_without_a_converted_model_is_refused_with_a_clear_line(
    tmp_path: Path, runtime: str, file: str
) -> None:
    old = tmp_path / "mnist_convnet"
    shutil.copytree(COMMITTED_MODEL / "1", old / "1")  # exported before the export wrote model.tflite and .onnx
    shutil.copy(COMMITTED_MODEL.parent / "model_card.schema.json", tmp_path / "model_card.schema.json")
    server = start_service(
        tmp_path / "server.log", "--model-dir", str(old), "--model-version", "1", env=environment(tmp_path, runtime)
    )
    try:
        server.process.wait(timeout=60)
    finally:
        server.stop()
    assert server.process.returncode != 0
    assert f"has no {file} model" in server.log() and "TensorFlow" in server.log()
