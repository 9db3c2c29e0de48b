"""Many clients at once through the real server: micro-batching must hand every request its own answers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np

from tests.drawing import as_person_would, encode


def mixed_requests(images: np.ndarray) -> list[dict[str, Any]]:
    """One image, three images (rows must stay together and in order), or an image file decoded off the loop."""
    requests: list[dict[str, Any]] = []
    for index in range(len(images) - 3):
        if index % 3 == 0:
            requests.append({"json": {"image": images[index].tolist()}})
        elif index % 3 == 1:
            requests.append({"json": {"images": images[index : index + 3].tolist()}})
        else:
            png = encode(as_person_would(images[index], seed=index))
            requests.append({"content": png, "headers": {"content-type": "image/png"}})
    return requests


def test_concurrent_requests_each_get_their_own_predictions(base_url: str, mnist_sample: dict) -> None:
    requests = mixed_requests(mnist_sample["x_test"][:93])
    with httpx.Client(base_url=base_url, timeout=30) as client:
        alone = [client.post("/predict", **request).json()["predictions"] for request in requests]

    async def burst() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=48)) as client:

            async def one(request: dict[str, Any]) -> list[dict[str, Any]]:
                response = await client.post("/predict", **request)
                assert response.status_code == 200, response.text
                return response.json()["predictions"]

            return await asyncio.gather(*(one(request) for request in requests))

    together = asyncio.run(burst())
    for got, want in zip(together, alone, strict=True):
        assert [prediction["digit"] for prediction in got] == [prediction["digit"] for prediction in want]
        for got_row, want_row in zip(got, want, strict=True):
            np.testing.assert_allclose(got_row["probabilities"], want_row["probabilities"], atol=1e-5)
