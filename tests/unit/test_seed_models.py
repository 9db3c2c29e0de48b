"""deploy/docker/seed_models.py: the Compose stack's one-shot `models` service, which fills the models volume.

It runs in the image; here it runs on folders in tmp_path, with the same contract module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "seed_models.py"


@pytest.fixture(scope="module")
def seed_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_version(model_folder: Path, version: str, content: str = "weights") -> Path:
    folder = model_folder / version
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_text(content)
    (folder / "variables" / "variables.index").write_text(content)
    return folder


@pytest.fixture
def image_repository(tmp_path: Path) -> Path:
    """What the image bakes: two models, the schema and the README, plus folders that are not versions."""
    source = tmp_path / "image"
    make_version(source / "mnist_convnet", "1")
    make_version(source / "mnist_no_maxpool", "1")
    make_version(source / "mnist_convnet", ".tmp-3")
    (source / "no_versions").mkdir()
    (source / "model_card.schema.json").write_text('{"schema": 2}')
    (source / "README.md").write_text("the contract")
    return source


def test_seed_empty_volume_gets_every_version_and_the_schema(seed_models: ModuleType, image_repository: Path) -> None:
    volume = image_repository.parent / "volume"
    volume.mkdir()

    added = seed_models.seed(image_repository, volume)

    assert sorted(added) == ["README.md", "mnist_convnet/1", "mnist_no_maxpool/1", "model_card.schema.json"]
    assert (volume / "mnist_convnet" / "1" / "variables" / "variables.index").read_text() == "weights"
    assert (volume / "model_card.schema.json").read_text() == '{"schema": 2}'
    assert not (volume / "mnist_convnet" / ".tmp-3").exists()
    assert not any(path.name.startswith(".tmp-") for path in volume.rglob("*"))


def test_seed_twice_adds_nothing_the_second_time(seed_models: ModuleType, image_repository: Path) -> None:
    volume = image_repository.parent / "volume"
    volume.mkdir()
    seed_models.seed(image_repository, volume)

    assert seed_models.seed(image_repository, volume) == []


def test_seed_keeps_trained_versions_and_never_overwrites_one(seed_models: ModuleType, image_repository: Path) -> None:
    volume = image_repository.parent / "volume"
    make_version(volume / "mnist_convnet", "1", content="the volume's own version 1")
    make_version(volume / "mnist_convnet", "2", content="trained in the stack")
    (volume / "model_card.schema.json").write_text('{"schema": 1}')

    added = seed_models.seed(image_repository, volume)

    assert sorted(added) == ["README.md", "mnist_no_maxpool/1", "model_card.schema.json"]
    assert (volume / "mnist_convnet" / "1" / "saved_model.pb").read_text() == "the volume's own version 1"
    assert (volume / "mnist_convnet" / "2" / "saved_model.pb").read_text() == "trained in the stack"
    assert (volume / "model_card.schema.json").read_text() == '{"schema": 2}'


def test_seed_newer_image_brings_its_new_version_to_an_old_volume(
    seed_models: ModuleType, image_repository: Path
) -> None:
    volume = image_repository.parent / "volume"
    volume.mkdir()
    seed_models.seed(image_repository, volume)
    make_version(image_repository / "mnist_convnet", "2", content="committed later")

    assert seed_models.seed(image_repository, volume) == ["mnist_convnet/2"]
    assert (volume / "mnist_convnet" / "2" / "saved_model.pb").read_text() == "committed later"


def test_seed_after_a_killed_run_replaces_its_half_copy(seed_models: ModuleType, image_repository: Path) -> None:
    volume = image_repository.parent / "volume"
    half_copy = volume / "mnist_convnet" / ".tmp-seed-1"
    half_copy.mkdir(parents=True)
    (half_copy / "saved_model.pb").write_text("trunc")

    seed_models.seed(image_repository, volume)

    assert not half_copy.exists()
    assert (volume / "mnist_convnet" / "1" / "saved_model.pb").read_text() == "weights"


def test_seed_main_without_the_volume_exits_1_with_a_message(
    seed_models: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(seed_models, "TARGET", tmp_path / "not-mounted")

    assert seed_models.main() == 1
    assert "not-mounted is not a folder" in capsys.readouterr().err


def test_seed_main_reports_what_the_volume_holds(
    seed_models: ModuleType, image_repository: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = image_repository.parent / "volume"
    volume.mkdir()
    monkeypatch.setattr(seed_models, "SOURCE", image_repository)
    monkeypatch.setattr(seed_models, "TARGET", volume)

    assert seed_models.main() == 0
    printed = capsys.readouterr().out
    assert "added model_card.schema.json, README.md, mnist_convnet/1, mnist_no_maxpool/1" in printed
    assert "{'mnist_convnet': [1], 'mnist_no_maxpool': [1]}" in printed
