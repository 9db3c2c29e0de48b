"""/openapi.json tells the truth: the documented examples are accepted, the limits are stated, every response
schema is the real one, and errors are documented."""

from __future__ import annotations

import base64

import httpx


def test_openapi_every_predict_example_is_accepted(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {"pixels", "flat", "batch", "file", "data_url", "files"} <= set(examples)
    for name, example in examples.items():
        response = client.post("/predict", json=example["value"])
        assert response.status_code == 200, f"{name}: {response.text}"
        assert all(prediction["digit"] == 7 for prediction in response.json()["predictions"]), name


def test_openapi_base64_examples_are_real_image_files(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    png, jpeg = examples["files"]["value"]["images_b64"]
    assert base64.b64decode(png).startswith(b"\x89PNG") and base64.b64decode(jpeg).startswith(b"\xff\xd8")


def test_openapi_states_the_limits_of_predict(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["PixelsBatchRequest"]["properties"]["images"]["maxItems"] == 256
    assert components["FileBatchRequest"]["properties"]["images_b64"]["maxItems"] == 256
    image = components["PixelsRequest"]["properties"]["image"]["anyOf"]
    nested, flat = image
    assert (nested["minItems"], nested["maxItems"]) == (28, 28)
    assert (flat["minItems"], flat["maxItems"]) == (784, 784)
    assert (flat["items"]["minimum"], flat["items"]["maximum"]) == (0, 255)
    assert "256 images per request" in schema["paths"]["/predict"]["post"]["description"]


def test_openapi_get_routes_document_their_real_response_schemas(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        "/health": "HealthResponse",
        "/health/live": "ProbeResponse",
        "/health/ready": "ProbeResponse",
        "/model/summary": "ModelSummary",
    }
    for path, model in expected.items():
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, path


def test_openapi_documents_errors_on_every_operation(client: httpx.Client) -> None:
    """The connection limits answer in the envelope everywhere; past them, TF Serving's and the Open Inference
    Protocol's paths answer in their protocol's {"error": "..."} form, and their clients get no 422."""
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        protocol = path.startswith(("/v1/", "/v2"))
        for method, operation in operations.items():
            for status in ("408", "414", "431", "500"):
                error = operation["responses"][status]["content"]["application/json"]["schema"]
                form = "ProtocolError" if protocol and status == "500" else "ErrorEnvelope"
                assert error == {"$ref": f"#/components/schemas/{form}"}, (method, path, status)
            if protocol:
                assert "422" not in operation["responses"], (method, path)
                assert "400" in operation["responses"], (method, path)
    assert {"400", "413", "415", "422", "503", "504"} <= set(paths["/predict"]["post"]["responses"])


def test_openapi_documents_the_protocol_routes_with_examples(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/models/{model}:predict", "/v2/models/{model}/infer"):
        examples = paths[path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert examples, path
    for path in ("/v1/models/{model}", "/v1/models/{model}/metadata", "/v2", "/v2/health/ready", "/v2/models/{model}"):
        assert "200" in paths[path]["get"]["responses"], path


def test_openapi_health_runtime_may_be_null(client: httpx.Client) -> None:
    runtime = client.get("/openapi.json").json()["components"]["schemas"]["HealthResponse"]["properties"]["runtime"]
    assert {"type": "null"} in runtime["anyOf"]
