"""Tests of ``voxvec speakers``: list, show, rename, remove (no model loaded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import SpeakerStore
from voxvec.cli import main

MODEL = ModelIdentity("test-model", "ab" * 32, 4, 16000)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    store.enroll(
        "alice", np.eye(4)[:2], model=MODEL, sources=["a1.wav", "a2.wav"], metadata={"team": "red"}
    )
    store.enroll("../bob", np.eye(4)[2], model=MODEL)
    return tmp_path / "s"


def test_list_show_rename_remove(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(store_dir)
    assert main(["speakers", "list", "--store", store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 speaker(s), model test-model"
    assert [line.split("\t")[:2] for line in lines[1:]] == [["alice", "2"], ["../bob", "1"]]
    assert main(["speakers", "show", "alice", "--store", store, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["count"] == 2 and shown["sources"] == ["a1.wav", "a2.wav"]
    assert shown["metadata"] == {"team": "red"}
    assert main(["speakers", "rename", "../bob", "Bob Smith", "--store", store]) == 0
    assert main(["speakers", "remove", "alice", "--store", store]) == 0
    capsys.readouterr()
    assert main(["speakers", "list", "--store", store, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == ["Bob Smith"]
    assert not (store_dir.parent / "bob").exists()
    assert main(["speakers", "remove", "alice", "--store", store]) == 2
    assert "no speaker 'alice'" in capsys.readouterr().err
    assert main(["speakers", "rename", "Bob Smith", "bad\0name", "--store", store]) == 2
    assert "control character" in capsys.readouterr().err


def test_speakers_list_imports_no_torch(store_dir: Path) -> None:
    code = (
        "import sys; from voxvec.cli import main; "
        f"main(['speakers', 'list', '--store', {str(store_dir)!r}]); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False"
