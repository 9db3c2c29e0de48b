"""The committed model through the real server, on digits sent as a person would send them."""

from __future__ import annotations

import httpx
import numpy as np

from tests.drawing import as_person_would, encode


def test_predict_png_uploads_drawn_by_people_are_98_percent_right(client: httpx.Client, mnist_sample: dict) -> None:
    """100 MNIST test digits, inverted to black on white, enlarged and moved off-centre, as PNG uploads."""
    images, labels = mnist_sample["x_test"][100:200], mnist_sample["y_test"][100:200]
    predicted = []
    for start in range(0, 100, 25):
        files = [
            ("file", (f"{index}.png", encode(as_person_would(images[index], seed=index)), "image/png"))
            for index in range(start, start + 25)
        ]
        response = client.post("/predict", files=files)
        assert response.status_code == 200, response.text
        predicted += [prediction["digit"] for prediction in response.json()["predictions"]]
    accuracy = float(np.mean(np.array(predicted) == labels))
    assert accuracy >= 0.98, f"accuracy {accuracy:.2f}; wrong at {np.flatnonzero(np.array(predicted) != labels)}"
