"""The two architectures: exactly the seed's layers and parameter counts."""

from __future__ import annotations

import pytest

from training.model import build_model, layer_table


def test_build_model_convnet_matches_the_seed() -> None:
    rows = layer_table(build_model("convnet"))
    assert [(row["type"], row["params"]) for row in rows if row["type"] != "InputLayer"] == [
        ("Conv2D", 320),
        ("MaxPooling2D", 0),
        ("Conv2D", 18_496),
        ("MaxPooling2D", 0),
        ("Conv2D", 36_928),
        ("Flatten", 0),
        ("Dense", 36_928),
        ("Dense", 650),
    ]
    assert sum(row["params"] for row in rows) == 93_322
    assert rows[-3]["output_shape"] == [None, 576]


def test_build_model_no_maxpool_keeps_a_22x22x64_map() -> None:
    model = build_model("convnet-no-maxpool")
    rows = {row["name"]: row for row in layer_table(model)}
    assert rows["conv2d_2"]["output_shape"] == [None, 22, 22, 64]
    assert rows["flatten"]["output_shape"] == [None, 30_976]
    assert rows["dense"]["params"] == 30_976 * 64 + 64
    assert model.count_params() == 320 + 18_496 + 36_928 + 30_976 * 64 + 64 + 650


def test_build_model_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="convnet, convnet-no-maxpool"):
        build_model("resnet")
