"""Tests of voxvec.train.checkpoint: atomic keep-last-K files, RNG capture, export to a bundle."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import voxvec
from voxvec.config import config_to_dict
from voxvec.models import create_model
from voxvec.train.checkpoint import (
    capture_rng_state,
    checksum_path,
    export_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_resume,
    remove_leftovers,
    restore_rng_state,
    resume_path,
    save_checkpoint,
)
from voxvec.weights import load_bundle

TINY = {"channels": 16, "res2_scale": 4, "se_channels": 8, "mfa_channels": 32,
        "attention_channels": 8, "embed_dim": 16}  # fmt: skip


def _state(model, step=7, loss=None):
    return {
        "arch": model.arch,
        "model_config": config_to_dict(model.config),
        "model": model.state_dict(),
        "step": step,
        "epoch": 1,
        "config": {"loss": loss or {"kind": "ge2e+aam", "ge2e": {}, "aam": {}}},
        "train_data": {"train_csv": "train.csv", "n_speakers": 8},
    }


def test_save_keeps_the_last_k_and_leaves_no_temporary_files(tmp_path):
    for step in (5, 10, 15, 20):
        path = save_checkpoint({"step": step}, tmp_path / "run", step, keep_last_k=2)
        assert path.name == f"ckpt_{step:08d}.pt"
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [
        "ckpt_00000015.pt",
        "ckpt_00000015.pt.sha256",
        "ckpt_00000020.pt",
        "ckpt_00000020.pt.sha256",
    ]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == files[::2]
    assert latest_checkpoint(tmp_path / "run").name == "ckpt_00000020.pt"
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["step"] == 20


def test_checkpoints_sort_by_step_not_by_name(tmp_path):
    save_checkpoint({}, tmp_path, 99_999_999, keep_last_k=5)
    save_checkpoint({}, tmp_path, 123_456_789, keep_last_k=5)
    assert latest_checkpoint(tmp_path).name == "ckpt_123456789.pt"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_load_refuses_what_is_not_a_training_checkpoint(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"model_state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a voxvec training checkpoint"):
        load_checkpoint(other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*broken.pt \(16 bytes\): \w+"):
        load_checkpoint(broken)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_survive_a_checkpoint_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leave a cached Gaussian in numpy's state
    save_checkpoint({"rng": [capture_rng_state()]}, tmp_path, 1, keep_last_k=1)
    expected = (random.random(), np.random.standard_normal(3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "ckpt_00000001.pt")["rng"][0])
    assert random.random() == expected[0]
    np.testing.assert_array_equal(np.random.standard_normal(3), expected[1])
    assert torch.equal(torch.rand(3), expected[2])


def test_export_gives_a_bundle_that_voxvec_load_reads(tmp_path, sine_wave):
    torch.manual_seed(0)
    model = create_model("ecapa", TINY).eval()
    ckpt = save_checkpoint(_state(model), tmp_path / "run", 7, keep_last_k=1)
    out = export_checkpoint(ckpt, tmp_path / "out" / "model.safetensors", metadata={"name": "t"})
    loaded, card = load_bundle(out)
    assert card["arch"] == "ecapa" and card["steps"] == 7 and card["name"] == "t"
    assert card["train_data"]["n_speakers"] == 8 and card["loss"] == "ge2e+aam"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    # min_speech_s=0: the tone is a plumbing input, not speech (it would be refused as one).
    embedder = voxvec.load(out, device="cpu", precision="float32", min_speech_s=0)
    with torch.no_grad():
        direct = model(torch.from_numpy(sine_wave)[None]).numpy()
    np.testing.assert_allclose(embedder.embed([sine_wave], sample_rate=16000), direct, atol=1e-5)


def test_export_refuses_weights_that_do_not_fit(tmp_path):
    model = create_model("ecapa", TINY)
    state = _state(model)
    state["model_config"] = {**state["model_config"], "embed_dim": 32}
    ckpt = save_checkpoint(state, tmp_path, 1, keep_last_k=1)
    with pytest.raises(ValueError, match="do not fit"):
        export_checkpoint(ckpt, tmp_path / "m.safetensors")


def test_export_reads_the_objective_of_checkpoints_written_before_the_nested_config(tmp_path):
    model = create_model("ecapa", TINY)
    ckpt = save_checkpoint(_state(model, loss="aam"), tmp_path / "run", 3, keep_last_k=1)
    _, card = load_bundle(export_checkpoint(ckpt, tmp_path / "m.safetensors"))
    assert card["loss"] == "aam"


def test_resume_path_auto_never_a_file_or_a_directory(tmp_path):
    run = tmp_path / "run"
    assert resume_path("auto", run) is None and resume_path("never", run) is None
    first = save_checkpoint({}, run, 5, keep_last_k=3)
    last = save_checkpoint({}, run, 10, keep_last_k=3)
    assert resume_path("auto", run) == last
    assert resume_path(str(first), tmp_path / "other") == first
    assert resume_path(str(run), tmp_path / "other") == last
    with pytest.raises(ValueError, match="already holds checkpoints"):
        resume_path("never", run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume_path(str(tmp_path / "empty"), run)
    with pytest.raises(FileNotFoundError, match="neither auto"):
        resume_path(str(tmp_path / "missing.pt"), run)


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # 4 KB of random bytes written over the middle, the size unchanged
        noise = np.random.default_rng(0).bytes(4096)
        path.write_bytes(data[:100] + noise + data[100 + len(noise) :])


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "is damaged: its sha256"),
        ("empty", r"is empty \(0 bytes\)"),
        ("overwritten", "is damaged: its sha256"),
    ],
)
def test_a_damaged_latest_checkpoint_is_detected_and_the_previous_one_used(
    tmp_path, how, message, caplog
):
    run = tmp_path / "run"
    model = create_model("ecapa", **TINY)
    for step in (5, 10, 15):
        save_checkpoint(_state(model, step=step), run, step, keep_last_k=3)
    latest = list_checkpoints(run)[-1]
    _damage(latest, how)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(latest)
    assert str(latest) in str(info.value)
    path, state = load_resume("auto", run)
    assert path.name == "ckpt_00000010.pt" and state["step"] == 10
    assert f"{latest}" in caplog.text and "trying the checkpoint before it" in caplog.text
    assert load_resume(str(run), tmp_path / "other")[0] == path  # a run directory: the same
    with pytest.raises(ValueError, match=message):  # a file named explicitly must be intact
        load_resume(str(latest), tmp_path / "other")
    for older in list_checkpoints(run)[:-1]:
        older.write_bytes(b"")
    with pytest.raises(
        ValueError, match="no intact checkpoint in .*run to resume from: .*ckpt_00000005.pt"
    ):
        load_resume("auto", run)


def test_a_checkpoint_without_checksum_loads_with_a_warning(tmp_path, caplog):
    path = save_checkpoint({"step": 3}, tmp_path, 3, keep_last_k=1)
    checksum_path(path).unlink()
    assert load_checkpoint(path)["step"] == 3
    assert "has no checksum" in caplog.text


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
    kept = save_checkpoint({"step": 3}, tmp_path, 3, keep_last_k=1)
    leftovers = [
        tmp_path / ".ckpt_00000006.pt.0123456789abcdef0123456789abcdef.tmp",
        tmp_path / ".ckpt_00000006.pt.sha256.0123456789abcdef0123456789abcdef.tmp",
        tmp_path / "ckpt_00000009.pt.sha256",  # a checksum whose checkpoint never landed
    ]
    for path in leftovers:
        path.write_bytes(b"x" * 100)
    (tmp_path / "notes.tmp").write_text("not ours")
    assert remove_leftovers(tmp_path) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [kept.name, checksum_path(kept).name, "notes.tmp"]
    )
    assert remove_leftovers(tmp_path / "missing") == []


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno
    import os

    previous = save_checkpoint({"step": 3}, tmp_path, 3, keep_last_k=1)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        OSError, match=r"cannot write checkpoint .*ckpt_00000006.pt .*No space left"
    ):
        save_checkpoint({"step": 6}, tmp_path, 6, keep_last_k=1)
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [previous] and load_checkpoint(previous)["step"] == 3
    assert load_resume("auto", tmp_path)[0] == previous  # the orphaned checksum is harmless
