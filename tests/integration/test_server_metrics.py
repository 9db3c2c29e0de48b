"""GET /metrics on a real server: every family is there and moves with traffic, on every protocol; the labels stay
bounded; promtool accepts the exposition; and a server with metrics off, JSON logs and the access log on."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import COMMITTED_MODEL, VERSION
from tests.integration.conftest import local_only, start_server, wait_until_ready

MODEL = {"model": "mnist_convnet", "version": VERSION}
FAMILIES = (
    "digit_serve_requests",
    "digit_serve_request_duration_seconds",
    "digit_serve_queue_wait_seconds",
    "digit_serve_inference_duration_seconds",
    "digit_serve_decode_duration_seconds",
    "digit_serve_batch_size",
    "digit_serve_queue_images",
    "digit_serve_inflight_requests",
    "digit_serve_model_state",
    "digit_serve_model_load_duration_seconds",
    "digit_serve_model_load_failures",
    "digit_serve_digit_check_images",
    "process_resident_memory_bytes",
    "process_open_fds",
)


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def family_names(client: httpx.Client) -> set[str]:
    return {family.name for family in text_string_to_metric_families(client.get("/metrics").text)}


def png_upload(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((112, 112)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_metrics_every_family_is_exposed(client: httpx.Client) -> None:
    names = family_names(client)
    missing = [name for name in FAMILIES if name not in names]
    assert not missing, missing


@local_only  # behind the compose load balancer each scrape reaches one replica of several
def test_metrics_move_with_traffic_on_every_protocol(
    client: httpx.Client, mnist_sample: dict[str, np.ndarray], grpc_target: str
) -> None:
    digit = mnist_sample["x_test"][0]
    before = scrape(client)
    assert client.post("/predict", json={"images": [digit.tolist()] * 3}).status_code == 200
    assert client.post("/predict", files={"file": ("d.png", png_upload(digit), "image/png")}).status_code == 200
    instances = (digit.astype(np.float32)[..., np.newaxis] / 255)[np.newaxis].tolist()
    assert client.post("/v1/models/mnist_convnet:predict", json={"instances": instances}).status_code == 200
    v2 = {
        "inputs": [
            {"name": "image_uint8", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": digit.ravel().tolist()}
        ]
    }
    assert client.post("/v2/models/mnist_convnet/infer", json=v2).status_code == 200
    assert client.post("/predict", json={"image": [[0] * 27] * 28}).status_code == 422

    import tritonclient.grpc as triton_grpc

    grpc_tensor = triton_grpc.InferInput("image_uint8", [1, 28, 28, 1], "UINT8")
    grpc_tensor.set_data_from_numpy(digit[np.newaxis, :, :, np.newaxis])
    triton_grpc.InferenceServerClient(grpc_target).infer("mnist_convnet", [grpc_tensor])
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for protocol, count in (("native", 2), ("tfserving", 1), ("v2_rest", 1)):
        assert delta("digit_serve_requests_total", protocol=protocol, code="200", **MODEL) == count, protocol
        assert delta("digit_serve_request_duration_seconds_count", protocol=protocol, **MODEL) >= count, protocol
    assert delta("digit_serve_requests_total", protocol="native", code="422", **MODEL) == 1
    assert delta("digit_serve_requests_total", protocol="v2_grpc", code="OK", **MODEL) == 1
    assert delta("digit_serve_queue_wait_seconds_count", **MODEL) >= 5  # one per request that reached the queue
    assert delta("digit_serve_inference_duration_seconds_count", **MODEL) >= 1
    assert delta("digit_serve_batch_size_sum", **MODEL) >= 6  # 3 + 1 + 1 + 1 + 1 images
    assert delta("digit_serve_decode_duration_seconds_count") == 1  # the PNG
    assert value(after, "digit_serve_model_state", state="AVAILABLE", **MODEL) == 1
    assert value(after, "digit_serve_model_state", state="FAILED", **MODEL) == 0
    assert value(after, "digit_serve_model_load_duration_seconds_count", model="mnist_convnet") >= 1
    assert value(after, "digit_serve_model_load_failures_total", model="mnist_convnet") == 0
    assert value(after, "digit_serve_inflight_requests") >= 0
    judged = sum(
        delta("digit_serve_digit_check_images_total", verdict=verdict, **MODEL) for verdict in ("digit", "not_digit")
    )
    assert judged == 7  # every image that reached the model, on every protocol: 3 + 1 + 1 + 1 + 1


@local_only  # each replica counts its own share of the requests
def test_metrics_labels_stay_bounded_under_random_model_names(client: httpx.Client) -> None:
    body = {"image": [0] * 784}
    for _ in range(1000):
        name = uuid.uuid4().hex
        assert client.post(f"/models/{name}/predict", json=body).status_code == 404
    assert client.get(f"/no/such/path/{uuid.uuid4().hex}").status_code == 404
    samples = scrape(client)
    models = {dict(labels).get("model") for name, labels in samples if name == "digit_serve_requests_total"}
    assert models <= {"mnist_convnet", "unknown"}, sorted(models)[:5]
    unknown = value(samples, "digit_serve_requests_total", protocol="native", model="unknown", version="", code="404")
    assert unknown >= 1000


def test_metrics_pass_promtool(client: httpx.Client) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make test installs Debian's prometheus package (apt-get install prometheus)"
    checked = subprocess.run([promtool, "check", "metrics"], input=client.get("/metrics").text, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


@local_only
def test_metrics_off_json_logs_and_access_lines(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    server = start_server(
        COMMITTED_MODEL,
        log_path,
        env={"DIGIT_SERVE_METRICS": "false", "DIGIT_SERVE_LOG_FORMAT": "json", "DIGIT_SERVE_ACCESS_LOG": "true"},
    )
    try:
        wait_until_ready(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/metrics").status_code == 404
            response = client.post("/predict", json={"image": [7] * 784}, headers={"X-Request-ID": "log-check-1"})
            assert response.status_code == 200
            client.post("/predict", json={"image": [1] * 783}, headers={"Authorization": "Bearer secret-token"})
    finally:
        server.stop()
    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    other = [line for line in lines if not line.startswith("{")]
    # TensorFlow's C++ start-up lines go straight to stderr, past Python's logging (named in the README).
    assert all("oneDNN" in line or "absl::InitializeLog" in line for line in other), other
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(record["logger"] == "uvicorn.error" for record in records)
    assert not any("color_message" in record for record in records)
    access = next(record for record in records if record.get("request_id") == "log-check-1")
    assert access["logger"] == "service.access"
    assert access["status"] == 200 and access["protocol"] == "native" and access["path"] == "/predict"
    assert access["model"] == "mnist_convnet" and access["version"] == VERSION and access["images"] == 1
    assert access["duration_ms"] > 0 and access["queue_ms"] >= 0 and access["bytes_in"] > 0
    text = log_path.read_text()
    assert "secret-token" not in text and "[7, 7, 7" not in text
