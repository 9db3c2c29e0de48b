"""The array types the image modules pass between them."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ArrayT = TypeVar("ArrayT", FloatArray, BoolArray)
