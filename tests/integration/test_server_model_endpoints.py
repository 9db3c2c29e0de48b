"""/model/summary, the health probes and the API documentation, through a real server."""

from __future__ import annotations

import httpx

from service.schemas import HealthResponse, ModelSummary


def test_model_summary_lists_the_seed_layers(client: httpx.Client) -> None:
    response = client.get("/model/summary")
    assert response.status_code == 200
    summary = ModelSummary.model_validate(response.json())
    layers = [(layer.name, layer.type, layer.output_shape, layer.params) for layer in summary.layers]
    assert ("conv2d", "Conv2D", [None, 26, 26, 32], 320) in layers
    assert ("conv2d_2", "Conv2D", [None, 3, 3, 64], 36_928) in layers
    assert ("dense", "Dense", [None, 64], 36_928) in layers
    assert summary.total_params == 93_322 == sum(layer.params for layer in summary.layers)
    assert summary.trainable_params == 93_322 and summary.non_trainable_params == 0
    assert summary.input.shape == [None, 28, 28, 1] and summary.output.shape == [None, 10]
    assert summary.metrics.test_accuracy >= 0.99


def test_model_summary_as_text_is_the_keras_table(client: httpx.Client) -> None:
    response = client.get("/model/summary", params={"format": "text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "conv2d (Conv2D)" in response.text and "(None, 26, 26, 32)" in response.text
    assert "Total params: 93,322" in response.text


def test_health_reports_ready_with_the_model(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    health = HealthResponse.model_validate(response.json())
    assert health.status == "ok" and health.ready and health.model is not None
    assert health.model.name == "mnist_convnet"


def test_health_probes_answer(client: httpx.Client) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready"}


def test_openapi_documents_every_input_form(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/png", "image/jpeg", "image/webp"} <= set(body)
    assert {"pixels", "flat", "batch", "file", "files"} <= set(body["application/json"]["examples"])
    schemas = spec["components"]["schemas"]
    assert {"PixelsRequest", "PixelsBatchRequest", "FileRequest", "FileBatchRequest", "ErrorEnvelope"} <= set(schemas)
    for path in ("/model/summary", "/health", "/health/live", "/health/ready"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200
