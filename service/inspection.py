"""What the model saw, for clients that ask (`/predict?include=input,feature_maps`): the normalised 28x28 image each
prediction was made from, as a PNG, and each convolution's and pooling's output for one image.

Feature maps are sent small: per layer, its values quantised to one byte each, channel by channel (each channel
scaled by its own maximum, so that a faint channel is as visible as a strong one), base64-encoded, in the layer's
(height, width, channels) order; `scale` holds each channel's maximum, so that a value is byte / 255 * scale[c].
The seed convnet's five maps come to ~37 KB of bytes (~50 KB of base64) per image.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from service.errors import InvalidRequest
from service.runtimes import FeatureMap

INCLUDE_OPTIONS = ("input", "feature_maps")


def included(values: list[str]) -> frozenset[str]:
    """The `include` query parameter, repeated or comma-separated: a subset of INCLUDE_OPTIONS."""
    wanted = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(wanted - set(INCLUDE_OPTIONS))
    if unknown:
        raise InvalidRequest(
            f"query parameter include takes {' and '.join(INCLUDE_OPTIONS)}, got {', '.join(unknown)[:80]!r}",
            details={"location": ["query", "include"]},
        )
    return frozenset(wanted)


def input_png_base64(image: np.ndarray) -> str:
    """A (28, 28) uint8 image, white digit on black as the model reads it, as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encoded_feature_map(feature_map: FeatureMap) -> dict[str, Any]:
    values = np.maximum(feature_map.values.astype(np.float32), 0)  # ReLU and max pooling outputs: never negative
    scale = values.reshape(-1, values.shape[-1]).max(axis=0)
    quantised = np.rint(values / np.where(scale > 0, scale, 1) * 255).astype(np.uint8)
    return {
        "layer": feature_map.layer,
        "shape": list(values.shape),
        "scale": [float(channel) for channel in scale],
        "data": base64.b64encode(quantised.tobytes()).decode("ascii"),
    }
