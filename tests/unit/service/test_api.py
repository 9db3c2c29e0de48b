"""The app in-process on a tiny model (its lifespan runs): the behaviours a real server cannot easily be pushed
into — a fault of ours, a model not ready, a full queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.schemas import ErrorEnvelope


def settings_for(repository: Path, **overrides: object) -> Settings:
    # No gRPC port in-process: its stubs would clash with tritonclient's in this process (see service/app.py).
    return Settings(model_dir=repository / "tiny", replica_name="unit", grpc_port=0, **overrides)


@pytest.fixture
def client(tiny_model_repository: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tiny_model_repository))) as test_client:
        yield test_client


def test_api_predict_on_the_tiny_model(client: TestClient, mnist_sample: dict) -> None:
    response = client.post("/predict", json={"images": mnist_sample["x_test"][:4].tolist()})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 4
    assert response.headers["x-served-by"] == "unit"


def test_api_not_ready_answers_503_in_the_envelope(tiny_model_repository: Path) -> None:
    client = TestClient(create_app(settings_for(tiny_model_repository)))  # no `with`: the lifespan has not run
    for path in ("/health", "/health/ready"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_ready"
    assert client.get("/health").json()["ready"] is False
    assert client.get("/health/live").status_code == 200
    response = client.post("/predict", json={"image": [0] * 784})
    assert response.status_code == 503
    ErrorEnvelope.model_validate(response.json())


def test_api_fault_of_ours_is_a_500_envelope_and_a_logged_traceback(
    tiny_model_repository: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service.runtimes import savedmodel as runtime

    working = runtime.SavedModelRuntime.classify

    def broken_on_marked_images(self: runtime.SavedModelRuntime, images: np.ndarray) -> np.ndarray:
        if np.isclose(images[:, 0, 0], 13 / 255).any():  # the runtime reads pixels in [0, 1]
            raise ArithmeticError("the model fell over")
        return working(self, images)

    monkeypatch.setattr(runtime.SavedModelRuntime, "classify", broken_on_marked_images)
    marked = [13] + [0] * 783
    with TestClient(create_app(settings_for(tiny_model_repository)), raise_server_exceptions=False) as client:
        with caplog.at_level(logging.ERROR):
            response = client.post("/predict", json={"image": marked}, headers={"X-Request-ID": "fault-1"})
        assert client.post("/predict", json={"image": [0] * 784}).status_code == 200, "the server lives on"
    assert response.status_code == 500
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == "internal_error" and envelope.request_id == "fault-1"
    assert response.headers["x-request-id"] == "fault-1"
    assert "fell over" not in response.text
    assert "the model fell over" in caplog.text


def test_api_full_queue_answers_503_with_retry_after(tiny_model_repository: Path) -> None:
    settings = settings_for(tiny_model_repository, queue_capacity=2)
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", json={"images": [[0] * 784] * 3})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "overloaded"


def test_api_fault_of_ours_does_not_escape_the_app(
    tiny_model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception that escaped the app made uvicorn drop the keep-alive connection without saying so; the app
    now answers it itself, so the connection stays usable."""
    from service.runtimes import savedmodel as runtime

    working = runtime.SavedModelRuntime.classify

    def broken_on_marked_images(self: runtime.SavedModelRuntime, images: np.ndarray) -> np.ndarray:
        if np.isclose(images[:, 0, 0], 13 / 255).any():  # the runtime reads pixels in [0, 1]
            raise ArithmeticError("the model fell over")
        return working(self, images)

    monkeypatch.setattr(runtime.SavedModelRuntime, "classify", broken_on_marked_images)
    with TestClient(create_app(settings_for(tiny_model_repository)), raise_server_exceptions=True) as client:
        response = client.post("/predict", json={"image": [13] + [0] * 783})
    assert response.status_code == 500
    assert ErrorEnvelope.model_validate(response.json()).error.code == "internal_error"


def test_api_out_of_memory_while_decoding_is_a_logged_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    from tests.drawing import encode

    def out_of_memory(self: Image.Image) -> None:
        raise MemoryError

    png = encode(Image.new("L", (64, 64), 255))
    monkeypatch.setattr(Image.Image, "load", out_of_memory)
    with caplog.at_level(logging.ERROR):
        response = client.post("/predict", content=png, headers={"content-type": "image/png", "x-request-id": "m-1"})
    assert response.status_code == 503, response.text
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == "insufficient_memory" and envelope.request_id == "m-1"
    assert "ran out of memory" in caplog.text


def test_api_a_dead_inference_worker_turns_readiness_and_predict_to_503(tiny_model_repository: Path) -> None:
    with TestClient(create_app(settings_for(tiny_model_repository))) as client:
        assert client.get("/health/ready").status_code == 200
        batcher = client.app_state["serving"].default.batcher

        async def kill_the_worker() -> None:
            batcher._worker.cancel()
            await asyncio.sleep(0.05)

        assert client.portal is not None
        client.portal.call(kill_the_worker)
        ready = client.get("/health/ready")
        predicted = client.post("/predict", json={"image": [0] * 784})
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "service_unavailable"
    assert predicted.status_code == 503 and predicted.json()["error"]["code"] == "service_unavailable"
    assert "inference worker has stopped" in predicted.json()["error"]["message"]
