"""serving.toml: TF Serving's version policies, labels, and one-line errors for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.contract import version_number, version_numbers
from service.policy import PolicyError, read_serving_config


def config_from(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serving.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("policy", "chosen"),
    [("{ latest = 1 }", {5}), ("{ latest = 2 }", {3, 5}), ("{ latest = 9 }", {1, 3, 5}), ('"all"', {1, 3, 5}),
     ("{ specific = [1, 4] }", {1})],
)  # fmt: skip
def test_policy_selects_versions_as_tf_serving_does(tmp_path: Path, policy: str, chosen: set[int]) -> None:
    config = read_serving_config(config_from(tmp_path, f"[models.m]\npolicy = {policy}\n"))
    assert config.for_model("m").select([1, 3, 5]) == chosen


def test_policy_defaults_to_latest_one_without_a_file(tmp_path: Path) -> None:
    config = read_serving_config(tmp_path / "absent.toml")
    assert config.for_model("any").select([1, 2]) == {2}
    assert config.for_model("any").describe() == {"latest": 1}


def test_policy_labels_are_kept(tmp_path: Path) -> None:
    config = read_serving_config(config_from(tmp_path, "[models.m]\nlabels = { stable = 1, canary-2 = 2 }\n"))
    assert config.for_model("m").labels == {"stable": 1, "canary-2": 2}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[models.m]\npolicy = { latest = 0 }\n", "models.m.policy: latest = 0 serves nothing"),
        ("[models.m]\npolicy = { latest = true }\n", "models.m.policy: must be"),
        ("[models.m]\npolicy = { latest = 1, specific = [1] }\n", "models.m.policy: must be"),
        ("[models.m]\npolicy = { specific = [0] }\n", "positive version numbers"),
        ("[models.m]\npolicy = 'some'\n", "models.m.policy: must be"),
        ("[models.m]\nversion = 1\n", "models.m.version: unknown key"),
        ("[models.m]\nlabels = { stable = 0 }\n", "versions are positive integers"),
        ("[models.m]\nlabels = { 'a b' = 1 }\n", "must be letters, digits"),
        ("[models.m]\npolicy = { specific = [2] }\nlabels = { stable = 1 }\n", "never serves"),
        ("[default]\nmodel = 'm'\n", "default: unknown key"),
        ("models = 3\n", "models:"),
        ("[models.m\n", "not valid TOML"),
    ],
)
def test_policy_errors_name_the_file_and_the_problem_in_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = config_from(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        read_serving_config(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message, message


@pytest.mark.parametrize(("name", "number"), [("1", 1), ("12", 12), ("0", None), ("-1", None), ("v2", None),
                                              (".tmp-3", None), ("١", None), ("²", None), ("", None)])  # fmt: skip
def test_contract_version_folder_names(name: str, number: int | None) -> None:
    assert version_number(name) == number


def test_contract_version_numbers_need_folders(tmp_path: Path) -> None:
    for name in ("3", "1", "0", "x", ".tmp-4"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert version_numbers(tmp_path) == [1, 3]
    assert version_numbers(tmp_path / "absent") == []
