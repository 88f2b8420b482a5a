"""Tests of ``voxvec train``: --help, --print-config, overrides, errors and a tiny real run."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from voxvec.cli import build_parser, main
from voxvec.data.augment import AugmentConfig
from voxvec.train.checkpoint import load_checkpoint
from voxvec.train.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("train_fixtures", REPO / "tests/train/conftest.py")
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


def _help(capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["train", "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_help_documents_every_option_and_the_torchrun_launch(capsys):
    text = _help(capsys)
    for f in dataclasses.fields(TrainConfig):
        assert f"\n  {f.name} (" in text or f.name == "augment"
    for f in dataclasses.fields(AugmentConfig):
        assert f"\n  augment.{f.name} (" in text
    assert "--print-config" in text and "torchrun --nproc-per-node" in text
    assert "--rdzv-endpoint" in text


def test_print_config_resolves_the_recipe_and_overrides(capsys, tmp_path):
    code = main(["train", "--config", str(REPO / "configs/convgru.yaml"), "--print-config",
                 "max_lr=1e-4", "augment.gain_prob=0.25", "precision=fp32"])  # fmt: skip
    assert code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    config = load_config(printed)
    assert config.model == "convgru" and config.max_lr == 1e-4 and config.precision == "fp32"
    assert config.augment.gain_prob == 0.25 and config.start_lr == 1e-8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus=1"], "bogus"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["max_steps=5"], "train_csv is required"),
    ],
)
def test_errors_exit_with_code_2_and_a_message(capsys, argv, message):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_tiny_training_run_from_the_command_line(capsys, tmp_path):
    train_csv = fixtures.write_corpus(tmp_path / "data", 4, 3, seed=5)
    run = tmp_path / "run"
    argv = ["train", *fixtures.TINY_ECAPA, f"train_csv={train_csv}", f"checkpoint_path={run}",
            "n_speakers=2", "n_utterances=2", "min_crop_s=0.5", "max_crop_s=0.8",
            "max_steps=2", "num_workers=0", "device=cpu"]  # fmt: skip
    assert main(argv) == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert final == run / "ckpt_00000002.pt" and load_checkpoint(final)["step"] == 2
    # The same command with more steps resumes from the last checkpoint and goes on.
    assert main([*argv, "max_steps=3"]) == 0
    assert load_checkpoint(run / "ckpt_00000003.pt")["step"] == 3
