"""Tests of ``voxvec train``: --help, --print-config, overrides, errors and a tiny real run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from voxvec.cli import main
from voxvec.train.checkpoint import load_checkpoint
from voxvec.train.config import TrainConfig, iter_fields, load_config

REPO = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("train_fixtures", REPO / "tests/train/conftest.py")
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


def _help(capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_help_documents_every_option_and_the_torchrun_launch(capsys):
    text = _help(capsys)
    for name, *_ in iter_fields(TrainConfig()):
        assert f"\n  {name}.*: " in text or f"\n  {name} (" in text, name
    assert "\n  data.augment.noise_prob (" in text and "\n  model.config (" in text
    assert "--print-config" in text and "torchrun --nproc-per-node" in text
    assert "--rdzv-endpoint" in text


def test_print_config_resolves_the_recipe_and_overrides(capsys, tmp_path):
    code = main(["train", "--config", str(REPO / "configs/convgru.yaml"), "--print-config",
                 "optim.max_lr=1e-4", "data.augment.gain_prob=0.25",
                 "precision=float32"])  # fmt: skip
    assert code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    config = load_config(printed)
    assert config.model.arch == "convgru" and config.optim.max_lr == 1e-4
    assert config.precision == "float32" and config.optim.start_lr == 1e-8
    assert config.data.augment.gain_prob == 0.25


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus=1"], "bogus"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["optim.max_steps=5"], "data.train_csv is required"),
        (["max_steps=5"], "max_steps"),
    ],
)
def test_errors_exit_with_code_2_and_a_message(capsys, argv, message):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_tiny_training_run_from_the_command_line(capsys, tmp_path):
    train_csv = fixtures.write_corpus(tmp_path / "data", 4, 3, seed=5)
    run = tmp_path / "run"
    argv = ["train", *fixtures.TINY_ECAPA, f"data.train_csv={train_csv}",
            f"checkpoint.path={run}", "data.n_speakers=2", "data.n_utterances=2",
            "data.min_crop_s=0.5", "data.max_crop_s=0.8", "optim.max_steps=2",
            "data.num_workers=0", "device=cpu"]  # fmt: skip
    assert main(argv) == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert final == run / "ckpt_00000002.pt" and load_checkpoint(final)["step"] == 2
    # The same command with more steps resumes from the last checkpoint and goes on.
    assert main([*argv, "optim.max_steps=3"]) == 0
    assert load_checkpoint(run / "ckpt_00000003.pt")["step"] == 3
