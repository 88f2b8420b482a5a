"""Tests of voxvec.train.loop on a synthetic corpus: a full tiny run, exact resume, the losses."""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from voxvec.train.checkpoint import export_checkpoint, list_checkpoints, load_checkpoint
from voxvec.train.config import ModelSection, config_to_yaml, load_config
from voxvec.train.loop import Trainer, train
from voxvec.train.schedule import LRSchedule
from voxvec.train.step import TrainStep
from voxvec.weights import load_bundle


def _scalar_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"]), set(acc.Tags()["images"]), acc


def test_a_tiny_run_writes_checkpoints_config_and_logs(tiny_config):
    config = tiny_config("checkpoint.keep_last_k=1")
    final = train(config)
    run = final.parent
    assert final.name == "ckpt_00000006.pt" and list_checkpoints(run) == [final]
    assert load_config(run / "config.yaml") == config
    state = load_checkpoint(final)
    assert state["step"] == 6 and state["arch"] == "ecapa"
    expected_lr = LRSchedule("one_cycle", 1e-3, 3e-3, 1e-4, 0.15, 6)(6)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected_lr)
    scalars, images, acc = _scalar_tags(run / "logs")
    assert {"train/loss", "train/ge2e", "opt/lr", "opt/grad_norm", "ge2e/w"} <= scalars
    assert {"speed/audio_s_per_s", "validation/eer", "validation/ge2e_loss"} <= scalars
    assert "validation/projection" in images
    eers = [e.value for e in acc.Scalars("validation/eer")]
    assert len(eers) == 2 and all(0.0 <= e <= 1.0 for e in eers)


def _train_interrupted(config, stop_after: int):
    """Run ``config`` but crash (like a kill) while computing step ``stop_after + 1``."""
    trainer = Trainer(config)
    step = trainer._train_step
    calls = [0]

    def crashing_step(batch):
        calls[0] += 1
        if calls[0] > stop_after:
            raise KeyboardInterrupt
        return step(batch)

    trainer._train_step = crashing_step
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_killed_run_resumes_exactly(tiny_config, tmp_path, num_workers):
    # Randomness everywhere: dropout-like SpecAugment in the model, augmentation in the workers,
    # the AAM margin ramp, several epochs (6 steps over 2 batches per epoch).
    common = [
        "model.config.freq_mask_bins=8",
        "model.config.time_mask_frames=10",
        "data.augment.gain_prob=0.5",
        "data.augment.reverb_prob=0.5",
        "loss.kind=ge2e+aam",
        "loss.aam.margin_warmup_pct=0.5",
        "optim.max_steps=6",
        "checkpoint.interval=3",
        "validation.interval=2",
        f"data.num_workers={num_workers}",
    ]
    straight = load_checkpoint(train(tiny_config(*common, f"checkpoint.path={tmp_path / 'a'}")))
    resumed_config = tiny_config(*common, f"checkpoint.path={tmp_path / 'b'}")
    _train_interrupted(resumed_config, stop_after=4)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["ckpt_00000003.pt"]
    resumed = load_checkpoint(train(resumed_config))
    assert resumed["step"] == straight["step"] == 6
    for part in ("model", "loss"):
        for key, value in straight[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}.{key} differs"
    for a, b in zip(
        straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(
            a["exp_avg_sq"], b["exp_avg_sq"]
        )
    assert resumed["sampler"] == straight["sampler"]


# Trains the config in argv[1] in a fresh process and SIGKILLs it (no clean-up of any kind runs)
# at the argv[3]-th training step, or in the argv[3]-th checkpoint write once its temporary
# file is on disk but before it is renamed into place.
KILLER = """
import os, signal, sys
from voxvec.train import loop
from voxvec.train.config import load_config

where, nth = sys.argv[2], int(sys.argv[3])
calls = [0]

def count_and_kill():
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

if where == "step":
    step = loop.Trainer._train_step
    def killing_step(self, batch):
        count_and_kill()
        return step(self, batch)
    loop.Trainer._train_step = killing_step
else:
    fsync = os.fsync
    def killing_fsync(fd):
        fsync(fd)
        count_and_kill()
    os.fsync = killing_fsync
loop.train(load_config(sys.argv[1]))
raise SystemExit("not killed")
"""


def _same_training_state(a, b):
    for part in ("model", "loss"):
        for key, value in a[part].items():
            assert torch.equal(b[part][key], value), f"{part}.{key} differs"
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                    strict=True):  # fmt: skip
        assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(
            x["exp_avg_sq"], y["exp_avg_sq"]
        )
    assert a["sampler"] == b["sampler"] and a["step"] == b["step"]


def _train_in_a_process(config, folder):
    """``train(config)`` in a fresh Python process; returns the final checkpoint's path."""
    path = folder / f"config-{config.checkpoint.path.replace('/', '_')}.yaml"
    path.write_text(config_to_yaml(config))
    code = "import sys; from voxvec.train import loop; from voxvec.train.config import load_config"
    code += "; print(loop.train(load_config(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def _with_broken_files(train_csv, folder):
    """A copy of ``train_csv`` (absolute paths) in ``folder`` with one broken file per speaker."""
    rows = train_csv.read_text().splitlines()
    speakers = sorted({row.split(",")[1] for row in rows[1:]})
    for k in range(len(speakers)):
        (folder / f"broken{k}.wav").write_bytes(b"RIFF" + bytes(40))
    broken = [f"{folder / f'broken{k}.wav'},{spk}" for k, spk in enumerate(speakers)]
    copy = folder / "train.csv"
    copy.write_text("\n".join([rows[0], *(f"{train_csv.parent / r}" for r in rows[1:]), *broken]))
    return copy


@pytest.mark.parametrize(("where", "nth"), [("step", 5), ("checkpoint", 2)])
def test_a_sigkilled_run_resumes_exactly_past_an_unreadable_file(
    tiny_config, synthetic_corpus, tmp_path, where, nth
):
    # Each speaker has one unreadable file: it is replaced the same way before and after the
    # kill, so resuming neither crashes on it nor changes the batches.
    # Every run is a fresh process, as the killed one must be: in-process runs would compute in
    # whatever state earlier tests left torch's thread pools in (other reduction orders).
    train_csv = _with_broken_files(synthetic_corpus[0], tmp_path)
    common = [f"data.train_csv={train_csv}", "validation.csv=null", "model.config.freq_mask_bins=8",
              "data.augment.gain_prob=0.5", "loss.kind=ge2e+aam"]  # fmt: skip
    straight = load_checkpoint(
        _train_in_a_process(tiny_config(*common, f"checkpoint.path={tmp_path / 'a'}"), tmp_path)
    )
    unreadable = (tmp_path / "a" / "unreadable.csv").read_text().splitlines()[1:]
    assert unreadable and all("broken" in line for line in unreadable)

    config = tiny_config(*common, f"checkpoint.path={tmp_path / 'b'}")
    (tmp_path / "config.yaml").write_text(config_to_yaml(config))
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "config.yaml"), where, str(nth)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "b"
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_00000003.pt"]
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == ([] if where == "step" else [leftovers[0]])
    if where == "checkpoint":
        assert leftovers[0].startswith(".ckpt_00000006.pt.")

    resumed = load_checkpoint(_train_in_a_process(config, tmp_path))
    _same_training_state(straight, resumed)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # removed at the start
    assert (run / "unreadable.csv").read_text().splitlines()[1:] == unreadable


def test_too_many_unreadable_files_stop_the_run_with_a_clear_error(
    tiny_config, synthetic_corpus, tmp_path
):
    train_csv = _with_broken_files(synthetic_corpus[0], tmp_path)
    config = tiny_config(f"data.train_csv={train_csv}", "data.max_unreadable_files=1",
                         "validation.csv=null")  # fmt: skip
    with pytest.raises(RuntimeError, match=r"2 training files are unreadable \(listed in .*"
                       r"unreadable.csv\), more than data.max_unreadable_files=1"):  # fmt: skip
        train(config)


def test_resume_sources(tiny_config, tmp_path):
    first = train(tiny_config("optim.max_steps=3"))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        Trainer(tiny_config("checkpoint.resume=never"))
    extended = Trainer(
        tiny_config(f"checkpoint.resume={first}", f"checkpoint.path={tmp_path / 'other'}")
    )
    assert extended.progress.step == 3 and extended.total_steps == 6
    with pytest.raises(FileNotFoundError, match="neither auto"):
        Trainer(tiny_config(f"checkpoint.resume={tmp_path / 'missing.pt'}"))
    with pytest.raises(ValueError, match="holds a 'ecapa' model"):
        Trainer(dataclasses.replace(tiny_config(), model=ModelSection("gru")))


def test_init_from_a_bundle_fine_tunes_its_weights(tiny_config, tmp_path):
    first = train(tiny_config("optim.max_steps=3", f"checkpoint.path={tmp_path / 'base'}"))
    bundle = export_checkpoint(first, tmp_path / "base.safetensors")
    pretrained, _ = load_bundle(bundle)
    tuned = Trainer(tiny_config(f"model.init_from={bundle}", f"checkpoint.path={tmp_path / 'ft'}"))
    # The model starts from the bundle's weights; the schedule and optimiser start afresh.
    for key, value in pretrained.state_dict().items():
        assert torch.equal(tuned.model.state_dict()[key], value), key
    assert tuned.progress.step == 0 and tuned.total_steps == 6
    final = tuned.fit()
    assert load_checkpoint(final)["step"] == 6
    # A resumed fine-tune takes its weights from the checkpoint, not from init_from again.
    resumed = Trainer(
        tiny_config(f"model.init_from={bundle}", f"checkpoint.path={tmp_path / 'ft'}")
    )
    assert resumed.progress.step == 6
    assert torch.equal(resumed.model.stem.weight, load_checkpoint(final)["model"]["stem.weight"])
    assert not torch.equal(resumed.model.stem.weight, pretrained.stem.weight)
    # Weights of another size or architecture are refused with the reason.
    with pytest.raises(ValueError, match="do not fit model.config"):
        Trainer(tiny_config(f"model.init_from={bundle}", "model.config.embed_dim=8",
                            f"checkpoint.path={tmp_path / 'bad'}"))  # fmt: skip
    with pytest.raises(ValueError, match="holds a 'ecapa' model but model.arch='gru'"):
        Trainer(dataclasses.replace(
            tiny_config(f"checkpoint.path={tmp_path / 'bad2'}"),
            model=ModelSection("gru", init_from=str(bundle)),
        ))  # fmt: skip


def test_required_settings_and_device_checks(tiny_config):
    with pytest.raises(ValueError, match="data.train_csv is required"):
        Trainer(tiny_config("data.train_csv=''"))
    with pytest.raises(ValueError, match="checkpoint.path is required"):
        Trainer(tiny_config("checkpoint.path=''"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="float16 needs a CUDA"):
            Trainer(tiny_config("precision=float16"))
    with pytest.raises(ValueError, match="min_crop_s"):
        Trainer(tiny_config("data.min_crop_s=0.01", "data.max_crop_s=0.02"))


def test_aam_margin_ramps_and_bfloat16_autocast_runs_on_cpu(tiny_config):
    config = tiny_config(
        "loss.kind=aam",
        "data.n_utterances=1",
        "loss.aam.margin_warmup_pct=1.0",
        "optim.max_steps=4",
        "precision=bfloat16",
        "validation.csv=null",
    )
    trainer = Trainer(config)
    assert trainer.step_module.autocast_dtype == torch.bfloat16
    trainer.fit()
    # After 4 of 4 steps the margin has ramped to 3/4 (set before the 4th step).
    assert trainer.loss.aam.margin == pytest.approx(0.2 * 3 / 4)
    assert trainer.loss.ge2e is None
    state = load_checkpoint(list_checkpoints(config.checkpoint.path)[-1])
    assert state["loss"]["aam.weight"].shape == (8, 1, 16)


def test_a_diverging_loss_stops_training(tiny_config, monkeypatch):
    forward = TrainStep.forward

    def nan_forward(self, *args):
        loss, parts = forward(self, *args)
        return loss * math.nan, parts

    monkeypatch.setattr(TrainStep, "forward", nan_forward)
    with pytest.raises(RuntimeError, match="diverged"):
        train(tiny_config())


def test_a_resumed_run_warns_about_changed_settings(tiny_config, tmp_path, caplog):
    import logging

    train(tiny_config("optim.max_steps=3"))
    with caplog.at_level(logging.WARNING, logger="voxvec.train"):
        Trainer(tiny_config("optim.max_steps=6", "data.augment.gain_prob=0.5"))
    assert "2 setting(s) changed" in caplog.text
    assert "optim.max_steps: 3 -> 6" in caplog.text
    assert "data.augment.gain_prob: 0.0 -> 0.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="voxvec.train"):
        Trainer(tiny_config("optim.max_steps=3"))
    assert "changed" not in caplog.text
