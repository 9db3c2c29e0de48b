"""Start-up through `python -m service`: the highest version wins, and a model that cannot be served stops the
process with one log line that names the path and the problem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import local_only, start_server, wait_until_ready

pytestmark = local_only


def copy_version(source_repository: Path, destination: Path, version: int) -> Path:
    target = destination / "tiny" / str(version)
    shutil.copytree(source_repository / "tiny" / "1", target)
    card_path = target / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["version"] = version
    card_path.write_text(json.dumps(card))
    shutil.copy(source_repository / "model_card.schema.json", destination / "model_card.schema.json")
    return target


def failed_start(model_dir: Path, log_path: Path, *extra: str) -> str:
    server = start_server(model_dir, log_path, *extra)
    try:
        returncode = server.process.wait(timeout=90)
    finally:
        server.stop()
    assert returncode != 0
    log = server.log()
    assert "Traceback" not in log, log
    problem_lines = [line for line in log.splitlines() if "cannot serve the model" in line]
    assert len(problem_lines) == 1, log
    return problem_lines[0]


def test_server_serves_the_highest_version(tiny_model_repository: Path, tmp_path: Path) -> None:
    for version in (1, 3, 2):
        copy_version(tiny_model_repository, tmp_path / "repository", version)
    server = start_server(tmp_path / "repository" / "tiny", tmp_path / "server.log")
    try:
        wait_until_ready(server)
        assert httpx.get(f"{server.url}/health").json()["model"] == {"name": "tiny", "version": 3}
    finally:
        server.stop()
    # SIGTERM is a graceful shutdown; uvicorn then re-raises the signal, as a process killed by it would.
    assert server.process.returncode in (0, -15), server.log()
    assert "Application shutdown complete" in server.log()


def test_server_serves_a_pinned_version(tiny_model_repository: Path, tmp_path: Path) -> None:
    for version in (1, 2):
        copy_version(tiny_model_repository, tmp_path / "repository", version)
    server = start_server(tmp_path / "repository" / "tiny", tmp_path / "server.log", "--model-version", "1")
    try:
        wait_until_ready(server)
        assert httpx.get(f"{server.url}/model/summary").json()["model"]["version"] == 1
    finally:
        server.stop()


def test_server_exits_on_a_missing_model_folder(tmp_path: Path) -> None:
    line = failed_start(tmp_path / "absent", tmp_path / "server.log")
    assert str(tmp_path / "absent") in line and "no such model folder" in line


def test_server_exits_on_an_empty_model_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = failed_start(tmp_path / "empty", tmp_path / "server.log")
    assert "no version folders" in line


def test_server_exits_on_a_corrupt_savedmodel(tiny_model_repository: Path, tmp_path: Path) -> None:
    version = copy_version(tiny_model_repository, tmp_path / "repository", 1)
    (version / "saved_model.pb").write_bytes(b"\x00garbage")
    line = failed_start(tmp_path / "repository" / "tiny", tmp_path / "server.log")
    assert str(version) in line and "not a loadable SavedModel" in line


def test_server_exits_when_the_card_disagrees_with_the_weights(tiny_model_repository: Path, tmp_path: Path) -> None:
    version = copy_version(tiny_model_repository, tmp_path / "repository", 1)
    card_path = version / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["architecture"]["total_params"] = 12_345
    card_path.write_text(json.dumps(card))
    line = failed_start(tmp_path / "repository" / "tiny", tmp_path / "server.log")
    assert "12,345" in line and "93,322" in line


@pytest.mark.parametrize("damage", ["delete", "invalid"])
def test_server_exits_on_a_missing_or_invalid_card(tiny_model_repository: Path, tmp_path: Path, damage: str) -> None:
    version = copy_version(tiny_model_repository, tmp_path / "repository", 1)
    card_path = version / "assets.extra" / "model_card.json"
    if damage == "delete":
        card_path.unlink()
    else:
        card_path.write_text(json.dumps({"name": "tiny"}))
    line = failed_start(tmp_path / "repository" / "tiny", tmp_path / "server.log")
    assert "model_card.json" in line
