"""Whether an input is a digit at all, through a real server: `is_digit` and `digit_score` on /predict, the
?reject=not_digit refusal, the same answer on the Open Inference Protocol and TF Serving's digit_check signature,
calibration and the check in /model/summary; and versions exported without a check, which say so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import nondigits
from service.schemas import ModelSummary, PredictResponse
from tests.conftest import COMMITTED_MODEL, VERSION
from tests.drawing import as_person_would, encode, on_transparent_canvas
from tests.integration.conftest import ServerProcess, local_only, ready, start_server

# The newest committed version without a digit check (the one the check was fine-tuned from).
UNCHECKED_VERSION = "2"


def non_digit_files(count: int, seed: int = 7) -> list[bytes]:
    """Drawn letters, symbols and shapes from the evaluation sets (sources the model never trained on)."""
    per_set = -(-count // 3)
    files = [
        sample.data
        for name in ("drawn_letters", "drawn_symbols", "shapes")
        for sample in nondigits.samples(name, per_set, seed)
    ]
    return files[:count]


def digit_files(mnist_sample: dict, count: int) -> list[bytes]:
    digits = mnist_sample["x_test"][:count]
    return [
        encode(on_transparent_canvas(digit)) if index % 2 else encode(as_person_would(digit, seed=index))
        for index, digit in enumerate(digits)
    ]


def predict_files(client: httpx.Client, files: list[bytes], **params: str) -> httpx.Response:
    return client.post(
        "/predict",
        params=params,
        files=[("file", (f"{index}.png", data, "image/png")) for index, data in enumerate(files)],
    )


def test_digits_are_digits_and_drawn_non_digits_are_not(client: httpx.Client, mnist_sample: dict) -> None:
    digits = predict_files(client, digit_files(mnist_sample, 24))
    others = predict_files(client, non_digit_files(24))
    assert digits.status_code == others.status_code == 200, (digits.text, others.text)
    digit_predictions = PredictResponse.model_validate(digits.json()).predictions
    other_predictions = PredictResponse.model_validate(others.json()).predictions
    assert sum(prediction.is_digit is True for prediction in digit_predictions) >= 23
    assert sum(prediction.is_digit is False for prediction in other_predictions) >= 0.8 * 24
    threshold = client.get("/model/summary").json()["digit_check"]["threshold"]
    for prediction in digit_predictions + other_predictions:
        assert prediction.digit_score is not None and 0 <= prediction.digit_score <= 1
        assert prediction.is_digit == (prediction.digit_score >= threshold)
    typical = np.median([prediction.digit_score for prediction in digit_predictions])
    assert typical > 0.2  # a typical digit is as digit-like as a typical validation digit, give or take


def test_json_pixels_get_the_check_too(client: httpx.Client, mnist_sample: dict) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).tolist()
    response = client.post("/predict", json={"images": [*mnist_sample["x_test"][:4].tolist(), *noise]})
    assert response.status_code == 200, response.text
    verdicts = [prediction["is_digit"] for prediction in response.json()["predictions"]]
    assert verdicts == [True] * 4 + [False] * 4


def test_reject_not_digit_refuses_a_non_digit_and_answers_a_digit(client: httpx.Client, mnist_sample: dict) -> None:
    letter = next(nondigits.samples("drawn_letters", 1, seed=3)).data
    refused = predict_files(client, [letter], reject="not_digit")
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "not_a_digit" and "does not look like a digit" in error["message"]
    [image] = error["details"]["images"]
    assert image["index"] == 0 and image["digit_score"] < error["details"]["threshold"]
    answered = predict_files(client, digit_files(mnist_sample, 2), reject="not_digit")
    assert answered.status_code == 200 and all(p["is_digit"] for p in answered.json()["predictions"])
    mixed = predict_files(client, [*digit_files(mnist_sample, 2), letter], reject="not_digit")
    assert mixed.status_code == 422 and [i["index"] for i in mixed.json()["error"]["details"]["images"]] == [2]
    bad = predict_files(client, [letter], reject="nothing")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert "reject" in bad.json()["error"]["message"]


def test_a_file_that_holds_several_things_is_not_a_digit(client: httpx.Client, mnist_sample: dict) -> None:
    """Two digits far apart on one sheet: the normaliser keeps one, and the check sees the ink it dropped."""
    from PIL import Image

    sheet = Image.new("L", (900, 300), 255)
    for index, digit in enumerate(mnist_sample["x_test"][:2]):
        sheet.paste(Image.fromarray(255 - digit).resize((200, 200)), (50 + index * 600, 50))
    [prediction] = predict_files(client, [encode(sheet)]).json()["predictions"]
    assert prediction["is_digit"] is False and prediction["digit_score"] == 0.0
    one = Image.new("L", (900, 300), 255)
    one.paste(Image.fromarray(255 - mnist_sample["x_test"][0]).resize((200, 200)), (50, 50))
    assert predict_files(client, [encode(one)]).json()["predictions"][0]["is_digit"] is True


def test_open_inference_protocol_answers_digit_score_and_is_digit(client: httpx.Client, mnist_sample: dict) -> None:
    pixels = np.concatenate([mnist_sample["x_test"][:3], np.full((1, 28, 28), 255, np.uint8)])
    body = {
        "inputs": [
            {"name": "image_uint8", "datatype": "UINT8", "shape": [4, 28, 28, 1], "data": pixels.ravel().tolist()}
        ]
    }
    response = client.post("/v2/models/mnist_convnet/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert list(outputs) == ["probabilities", "digit", "digit_score", "is_digit"]
    assert outputs["is_digit"]["datatype"] == "BOOL" and outputs["is_digit"]["data"] == [True, True, True, False]
    assert outputs["digit_score"]["shape"] == [4] and outputs["digit_score"]["data"][3] < 0.01
    only = client.post("/v2/models/mnist_convnet/infer", json=body | {"outputs": [{"name": "is_digit"}]})
    assert [output["name"] for output in only.json()["outputs"]] == ["is_digit"]


def test_tf_serving_digit_check_signature_answers_probabilities_and_score(
    client: httpx.Client, mnist_sample: dict
) -> None:
    instances = (mnist_sample["x_test"][:2].astype(np.float32) / 255)[..., np.newaxis].tolist()
    plain = client.post("/v1/models/mnist_convnet:predict", json={"instances": instances}).json()
    assert len(plain["predictions"][0]) == 10  # the default signature is unchanged for TF Serving clients
    rows = client.post(
        "/v1/models/mnist_convnet:predict", json={"signature_name": "digit_check", "instances": instances}
    )
    assert rows.status_code == 200, rows.text
    [first, second] = rows.json()["predictions"]
    assert set(first) == {"probabilities", "score"} and isinstance(second["score"], float)
    np.testing.assert_allclose(first["probabilities"], plain["predictions"][0], atol=1e-6)
    columns = client.post(
        "/v1/models/mnist_convnet:predict", json={"signature_name": "digit_check", "inputs": instances}
    )
    assert columns.status_code == 200, columns.text
    assert len(columns.json()["outputs"]["score"]) == 2
    metadata = client.get("/v1/models/mnist_convnet/metadata").json()
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(signatures["digit_check"]["outputs"]) == {"probabilities", "score"}
    unknown = client.post(
        "/v1/models/mnist_convnet:predict", json={"signature_name": "__saved_model_init_op", "instances": instances}
    )
    assert unknown.status_code == 400 and "not found" in unknown.json()["error"]


def test_summary_shows_calibration_and_the_check(client: httpx.Client) -> None:
    summary = ModelSummary.model_validate(client.get("/model/summary").json())
    assert summary.model.version == int(VERSION)
    assert summary.calibration is not None and summary.calibration.temperature > 0
    assert summary.calibration.test_ece_after < summary.calibration.test_ece_before
    assert "calibrated" in summary.output.description
    assert summary.digit_check.available and summary.digit_check.score == "energy"
    assert summary.digit_check.threshold_source == "card" and summary.digit_check.test_flagged is not None
    assert summary.digit_check.test_flagged <= 0.01
    picture = client.get(summary.calibration.reliability_diagram)
    assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    text = client.get("/model/summary", params={"format": "text"}).text
    assert "Calibrated: temperature" in text and "Digit check: energy score" in text


@pytest.fixture(scope="module")
def unchecked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The committed model pinned to the version exported before the digit check."""
    log = tmp_path_factory.mktemp("unchecked") / "server.log"
    with ready(start_server(COMMITTED_MODEL, log, "--model-version", UNCHECKED_VERSION)) as server:
        yield server


@local_only
def test_a_version_without_a_check_answers_null_and_says_why(
    unchecked_server: ServerProcess, mnist_sample: dict
) -> None:
    with httpx.Client(base_url=unchecked_server.url, timeout=30) as http:
        [prediction] = http.post("/predict", json={"image": mnist_sample["x_test"][0].tolist()}).json()["predictions"]
        assert prediction["is_digit"] is None and prediction["digit_score"] is None
        summary = http.get("/model/summary").json()
        assert summary["calibration"] is None
        assert (
            summary["digit_check"]["available"] is False and "without a digit check" in summary["digit_check"]["reason"]
        )
        refused = http.post(
            "/predict", params={"reject": "not_digit"}, json={"image": mnist_sample["x_test"][0].tolist()}
        )
        assert refused.status_code == 501 and refused.json()["error"]["code"] == "not_supported"
        pixels = {
            "inputs": [
                {
                    "name": "image_uint8",
                    "datatype": "UINT8",
                    "shape": [1, 28, 28, 1],
                    "data": mnist_sample["x_test"][0].ravel().tolist(),
                }
            ]
        }
        outputs = http.post("/v2/models/mnist_convnet/infer", json=pixels).json()["outputs"]
        assert [output["name"] for output in outputs] == ["probabilities", "digit"]
        asked = http.post("/v2/models/mnist_convnet/infer", json=pixels | {"outputs": [{"name": "is_digit"}]})
        assert asked.status_code == 400 and "without a digit check" in asked.json()["error"]
        signature = http.post(
            "/v1/models/mnist_convnet:predict",
            json={"signature_name": "digit_check", "instances": [np.zeros((28, 28, 1)).tolist()]},
        )
        assert signature.status_code == 400


@local_only
def test_the_operator_can_override_the_threshold(tmp_path: Path, mnist_sample: dict) -> None:
    override = {"DIGIT_SERVE_DIGIT_THRESHOLD": "0.999"}
    server = start_server(COMMITTED_MODEL, tmp_path / "server.log", env=override)
    with ready(server), httpx.Client(base_url=server.url, timeout=30) as http:
        check = http.get("/model/summary").json()["digit_check"]
        assert check["threshold"] == 0.999 and check["threshold_source"] == "DIGIT_SERVE_DIGIT_THRESHOLD"
        assert check["card_threshold"] < 0.05
        response = http.post("/predict", json={"images": mnist_sample["x_test"][:8].tolist()})
        assert not any(prediction["is_digit"] for prediction in response.json()["predictions"])
    refused = start_server(COMMITTED_MODEL, tmp_path / "bad.log", env={"DIGIT_SERVE_DIGIT_THRESHOLD": "1.5"})
    refused.process.wait(timeout=60)
    assert refused.process.returncode != 0 and "digit_threshold" in refused.log()
