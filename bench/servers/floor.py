"""The framework floor: FastAPI parsing and validating the same JSON body, then answering a constant.

No model and no image work happen here, so its requests per second are what FastAPI, pydantic and uvicorn cost
on this machine for one 28x28 JSON image. The service cannot be much faster than this with the same stack.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, field_validator

IMAGE_SIDE = 28

# A response shaped like the service's, built once: the floor measures the framework, not the payload.
CONSTANT_RESPONSE = {
    "predictions": [{"digit": 7, "confidence": 0.99, "probabilities": [0.001] * 7 + [0.99] + [0.001] * 2}],
    "model": {"name": "floor", "version": 0},
    "request_id": "",
}


class ImageRequest(BaseModel):
    """One grayscale image as 28 rows of 28 integer pixels."""

    image: list[list[int]]

    @field_validator("image")
    @classmethod
    def check_image_is_28_by_28(cls, image: list[list[int]]) -> list[list[int]]:
        if len(image) != IMAGE_SIDE or any(len(row) != IMAGE_SIDE for row in image):
            raise ValueError(f"expected a {IMAGE_SIDE}x{IMAGE_SIDE} image")
        return image


app = FastAPI(title="bench floor")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# The route has no return annotation on purpose: FastAPI then adds no response model to validate against.
@app.post("/predict")
async def predict(body: ImageRequest):
    return CONSTANT_RESPONSE
