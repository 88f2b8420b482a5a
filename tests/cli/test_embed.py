"""Tests of ``voxvec embed``: inputs (files, folders, manifests), outputs, bad files, exit codes."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxvec.cli import main
from voxvec.embedding_files import read_embeddings, side_files, write_embeddings
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
    assert "embedded 3 files, 1 failed (1 cannot decode" in captured.err  # by reason
    assert captured.err.count("broken.wav") == 1  # the summary does not repeat the file
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
    assert (
        "nope.wav" in err and "embedded 0 files, 1 failed (1 [Errno 2] audio file not found)" in err
    )
    assert "audio file not found) (nothing written); failures listed in" in err


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


# --------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A much smaller model than :func:`bundle`, for the tests that run voxvec in processes."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tinier.safetensors"
    model = create_model("ecapa", channels=16, mfa_channels=32, attention_channels=8)
    return save_bundle(model, path, {"name": "tinier"})


def _many_inputs(speech: list[Path], root: Path, n: int) -> Path:
    """A folder of ``n`` 1.5 s clips of the recordings and one broken file (``n + 1`` inputs)."""
    root.mkdir()
    for i in range(n):
        wav, rate = sf.read(speech[i % len(speech)], dtype="float32")
        start = (i // len(speech)) * rate // 2
        sf.write(root / f"f{i:02d}.wav", wav[start : start + 3 * rate // 2], rate)
    (root / "f07b.wav").write_bytes(b"RIFF not really a wave file" * 10)
    return root


# `voxvec ARGV` in a fresh process, each chunk of inputs taking at least 0.2 s more, so that a
# test can kill it (or start a second run) while it is in the middle of its inputs.
SLOW_VOXVEC = """
import sys, time
import voxvec.embedding_files as jobs
from voxvec.cli import main

embed_chunk = jobs._embed_chunk

def slow_chunk(*args, **kwargs):
    time.sleep(0.2)
    return embed_chunk(*args, **kwargs)

jobs._embed_chunk = slow_chunk
sys.exit(main(sys.argv[1:]))
"""


def _voxvec(*argv: str | Path) -> list[str]:
    return [sys.executable, "-c", SLOW_VOXVEC, *map(str, argv)]


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()!r}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_killed_run_resumes_to_the_output_of_an_uninterrupted_one(
    tiny_bundle: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _many_inputs(speech, tmp_path / "in", n=12)
    options = ["--model", str(tiny_bundle), "--chunk-size", "2", "--batch-size", "3", "--device",
               "cpu", "--precision", "float32", "-q"]  # fmt: skip
    straight = tmp_path / "straight.npz"
    assert main(["embed", str(folder), "--out", str(straight), *options]) == 1

    out = write_embeddings(tmp_path / "emb.npz", np.ones((1, 4), np.float32), ["earlier run"])
    before = out.read_bytes()
    journal = side_files(out)[0]
    run = subprocess.Popen(_voxvec("embed", folder, "--out", out, *options), stderr=subprocess.PIPE)
    _wait_for(lambda: journal.is_file() and journal.read_bytes().count(b"\n") >= 3, run, "chunks")
    run.kill()
    run.wait()
    assert out.read_bytes() == before  # the output is never half-written, the old one kept
    n_chunks = journal.read_bytes().count(b"\n") - 1
    assert 2 <= n_chunks < 7

    capsys.readouterr()
    assert main(["embed", str(folder), "--out", str(out), *options, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "f07b.wav" in err and "embedded 12 files, 1 failed" in err
    assert f"({2 * n_chunks} from the interrupted run) -> {out}" in err
    a, b = np.load(straight), np.load(out)
    np.testing.assert_array_equal(a["embeddings"], b["embeddings"])  # bit-identical
    assert list(a["ids"]) == list(b["ids"]) and len(b["ids"]) == 12
    assert not journal.exists()
    report = side_files(out)[2].read_text().splitlines()
    assert report[0] == "index,path,reason" and report[1].startswith(f"8,{folder / 'f07b.wav'},")


def test_a_second_run_on_the_same_output_is_refused_and_the_first_wins(
    tiny_bundle: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _many_inputs(speech, tmp_path / "in", n=6)
    options = ["--model", tiny_bundle, "--chunk-size", "1", "--device", "cpu", "--precision",
               "float32", "-q"]  # fmt: skip
    out = tmp_path / "emb.csv"
    lock = side_files(out)[1]
    first = subprocess.Popen(
        _voxvec("embed", folder, "--out", out, *options), stderr=subprocess.PIPE
    )
    # the pid is written once the lock is held (the file exists a moment before)
    _wait_for(lambda: lock.is_file() and lock.read_text().strip() != "", first, "the lock")
    first.send_signal(signal.SIGSTOP)  # hold the first run inside its job
    try:
        code = main(["embed", str(folder), "--out", str(out), *map(str, options)])
    finally:
        first.send_signal(signal.SIGCONT)
    assert code == 2 and "is being written by another job" in capsys.readouterr().err
    assert first.wait(timeout=120) == 1
    written = read_embeddings(out)
    assert [Path(i).name for i in written.ids] == [f"f{i:02d}.wav" for i in range(6)]
    np.testing.assert_allclose(
        written.embeddings, _expected(tiny_bundle, [Path(i) for i in written.ids]), atol=1e-5
    )
    assert not lock.exists()


def test_out_equal_to_an_input_audio_file_is_refused(
    bundle: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "a.npy"  # an input whose name is also a valid output name
    audio.write_bytes(b"not audio")
    assert main(["embed", str(audio), str(speech[0]), "--out", str(audio), "--model",
                 str(bundle)]) == 2  # fmt: skip
    assert "is also an input" in capsys.readouterr().err and audio.read_bytes() == b"not audio"


def test_an_empty_folder_among_the_inputs_does_not_stop_the_run(
    bundle: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "e.npy"
    args = ["embed", str(tmp_path / "empty"), str(speech[0]), "--out", str(out)]
    assert main([*args, "--model", str(bundle), "--precision", "float32", "-q"]) == 0
    assert np.load(out).shape == (1, 256)


# --------------------------------------------------------------------------- properties

NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1,
    max_size=10,
).filter(lambda s: not s.startswith(".") and not s.startswith("-"))  # fmt: skip


class NameEmbedder:
    """A stand-in for the model: files whose name holds 'x' fail, the others embed to a hash."""

    precision = "float32"

    def iter_embed(self, paths: list[Path], batch_size: int = 16) -> Iterator[SimpleNamespace]:
        for path in paths:
            if "x" in Path(path).name:
                yield SimpleNamespace(embedding=None, error=ValueError(f"'{path}': no speech"))
            else:
                seed = sum(Path(path).name.encode())
                yield SimpleNamespace(
                    embedding=np.random.default_rng(seed).standard_normal(4), error=None
                )


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    names=st.lists(NAME, min_size=1, max_size=5, unique=True),
    in_a_folder=st.booleans(),
    suffix=st.sampled_from([".csv", ".npz"]),
)
def test_any_file_names_through_the_command_line(
    names: list[str],
    in_a_folder: bool,
    suffix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import voxvec.cli.embed

    monkeypatch.setattr(voxvec.cli.embed, "load_embedder", lambda args: NameEmbedder())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        files = [folder / f"{name}.wav" for name in names]
        for path in files:
            path.write_bytes(b"")
        out = Path(tmp) / f"out put{suffix}"
        inputs = [str(folder)] if in_a_folder else [str(p) for p in files]
        code = main(["embed", *inputs, "--out", str(out), "-q"])
        order = sorted(files) if in_a_folder else files
        bad = [p for p in order if "x" in p.name]
        good = [p for p in order if "x" not in p.name]
        assert code == (1 if bad else 0)
        err = capsys.readouterr().err
        assert f"embedded {len(good)} files, {len(bad)} failed" in err
        if good:
            assert read_embeddings(out).ids == [str(p) for p in good]
        else:
            assert not out.exists()
        report = side_files(out)[2]
        if bad:
            with open(report, newline="", encoding="utf-8") as f:
                assert [row[1] for row in csv.reader(f)][1:] == [str(p) for p in bad]
        else:
            assert not report.exists()
