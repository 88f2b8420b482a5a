"""Tests of ``voxvec embed``: inputs (files, folders, manifests), outputs, bad files, exit codes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.cli import main
from voxvec.inference import Embedder
from voxvec.models import create_model
from voxvec.weights import load_bundle, save_bundle

SO_FILES = ("audio/0001/000010011.ogg", "audio/0001/000010035.ogg", "audio/0005/000050003.ogg")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained model saved as a bundle (what --model accepts as a path)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_bundle(create_model("ecapa", channels=64, mfa_channels=192), path, {"name": "tiny"})


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[Path]:
    """Three real recordings (16 kHz Opus) of two speakers."""
    files = [shared_data / "speechocean762" / f for f in SO_FILES]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"expected recordings missing: {missing}")
    return files


def _expected(bundle: Path, files: list[Path]) -> np.ndarray:
    model, card = load_bundle(bundle)
    return Embedder(model, card=card, precision="float32").embed(files)


def test_folder_input_skips_bad_files_and_writes_the_rest(
    bundle: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "recordings"
    (root / "spk1").mkdir(parents=True)
    (root / "spk1" / "a.ogg").symlink_to(speech[0])
    (root / "spk1" / "b.OGG").symlink_to(speech[1])
    (root / "c.ogg").symlink_to(speech[2])
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file" * 10)
    (root / "notes.txt").write_text("not audio")
    out = tmp_path / "out" / "emb.npz"

    code = main(["embed", str(root), "--model", str(bundle), "--out", str(out), "--device", "cpu",
                 "--precision", "float32"])  # fmt: skip

    captured = capsys.readouterr()
    assert code == 1
    assert "broken.wav" in captured.err and "cannot decode" in captured.err
    assert "embedded 3 files, 1 failed" in captured.err
    data = np.load(out)
    ids = [Path(i).name for i in data["ids"]]
    assert sorted(ids) == ["a.ogg", "b.OGG", "c.ogg"]
    assert "speakers" not in data
    expected = _expected(bundle, [Path(i) for i in data["ids"]])
    np.testing.assert_allclose(data["embeddings"], expected, atol=1e-4)
    assert data["embeddings"].shape == (3, 256) and data["embeddings"].dtype == np.float32


def test_manifest_input_keeps_speakers(bundle: Path, speech: list[Path], tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker"])
        writer.writerows([[speech[0], "so-0001"], [speech[1], "so-0001"], [speech[2], "so-0005"]])
    out = tmp_path / "emb.npz"
    args = ["embed", str(manifest), "--model", str(bundle), "--out", str(out), "-q"]
    code = main([*args, "--precision", "float32"])
    assert code == 0
    data = np.load(out)
    assert list(data["speakers"]) == ["so-0001", "so-0001", "so-0005"]
    assert [Path(i) for i in data["ids"]] == speech
    np.testing.assert_allclose(data["embeddings"], _expected(bundle, speech), atol=1e-4)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_npy_and_csv_outputs(
    bundle: Path,
    speech: list[Path],
    tmp_path: Path,
    suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / f"emb{suffix}"
    args = ["embed", *map(str, speech[:2]), "--model", str(bundle), "--out", str(out)]
    assert main([*args, "--batch-size", "1", "--precision", "float32"]) == 0
    assert "embedded 2 files, 0 failed" in capsys.readouterr().err
    expected = _expected(bundle, speech[:2])
    if suffix == ".npy":
        np.testing.assert_allclose(np.load(out), expected, atol=1e-4)
    else:
        with open(out, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][:2] == ["id", "e0"] and len(rows[0]) == 257
        assert [r[0] for r in rows[1:]] == [str(p) for p in speech[:2]]
        got = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_window_and_vad_options_reach_the_embedder(
    bundle: Path, speech: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "emb.npy"
    args = ["embed", str(speech[0]), "--model", str(bundle), "--out", str(out), "--device", "auto"]
    options = ["--window-s", "1.0", "--hop-s", "0.5", "--vad", "energy", "--precision", "float32"]
    assert main([*args, *options]) == 0
    model, _ = load_bundle(bundle)
    expected = Embedder(model, window_s=1.0, hop_s=0.5, vad="energy", precision="float32").embed(
        speech[0]
    )
    np.testing.assert_allclose(np.load(out), expected, atol=1e-4)
    assert not np.allclose(np.load(out), _expected(bundle, speech[:1]), atol=1e-3)


def test_all_failed_writes_nothing(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "emb.npz"
    code = main(["embed", str(tmp_path / "nope.wav"), "--model", str(bundle), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "nope.wav" in err and "embedded 0 files, 1 failed (nothing written)" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "emb.txt"], "must end in one of ('.npy', '.npz', '.csv')"),
        (["--out", "emb.npy", "--batch-size", "0"], "batch_size must be >= 1"),
        (["--out", "emb.npy", "--hop-s", "30"], "hop_s"),
    ],
)
def test_bad_options_are_errors(
    bundle: Path,
    speech: list[Path],
    tmp_path: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["embed", str(speech[0]), "--model", str(bundle), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_empty_folder_is_an_error(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["embed", str(tmp_path / "empty"), "--model", str(bundle), "--out", "x.npy"])
    assert code == 2 and "no audio files" in capsys.readouterr().err


def test_vad_off_is_the_default_and_means_no_trimming(
    bundle: Path, speech: list[Path], tmp_path: Path
) -> None:
    args = ["embed", str(speech[0]), "--model", str(bundle), "--precision", "float32"]
    assert main([*args, "--out", str(tmp_path / "off.npy"), "--vad", "off"]) == 0
    assert main([*args, "--out", str(tmp_path / "default.npy")]) == 0
    off = np.load(tmp_path / "off.npy")
    np.testing.assert_array_equal(off, np.load(tmp_path / "default.npy"))
    np.testing.assert_allclose(off, _expected(bundle, speech[:1]), atol=1e-4)


def test_out_equal_to_an_input_manifest_is_refused_before_loading(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,speaker\n{speech[0]},so-0001\n")
    before = manifest.read_bytes()
    # the model does not exist: the output is refused before anything is loaded
    args = ["embed", str(manifest), "--out", str(manifest), "--model", "no-such-model"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is also an input" in err and "no-such-model" not in err
    assert manifest.read_bytes() == before
