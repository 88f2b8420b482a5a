"""Tests of the "pyannote-segmentation" converter (pyannote Lightning checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxvec.models.pyannet import PyanNet
from voxvec.weights.converters import (
    CONVERTERS,
    UnknownObject,
    load_pickled_checkpoint,
    pyannote_segmentation_state_dict,
)

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO.parent / "shared" / "models" / "pyannote-segmentation-3.0" / "pytorch_model.bin"


class Specifications:
    """Stands for a pyannote class the restricted unpickler must not run."""

    ran = False

    def __setstate__(self, state: object) -> None:
        Specifications.ran = True


def _lightning_file(tmp_path: Path, **hparams: object) -> Path:
    torch.manual_seed(0)
    hyper = {
        "sample_rate": 16000,
        "sincnet": {"stride": 10},
        "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True},
        "linear": {"hidden_size": 128, "num_layers": 2},
    }
    hyper.update(hparams)
    path = tmp_path / "pytorch_model.bin"
    torch.save(
        {
            "state_dict": PyanNet().state_dict(),
            "hyper_parameters": hyper,
            "pyannote.audio": {"specifications": Specifications()},
        },
        path,
    )
    return path


def test_reads_a_lightning_checkpoint_without_running_its_classes(tmp_path: Path) -> None:
    path = _lightning_file(tmp_path)
    arch, state = CONVERTERS["pyannote-segmentation"].read(path)
    assert arch == "pyannet"
    PyanNet().load_state_dict(state, strict=True)
    assert not Specifications.ran
    spec = load_pickled_checkpoint(path)["pyannote.audio"]["specifications"]
    assert isinstance(spec, UnknownObject)


def test_other_hyper_parameters_are_refused(tmp_path: Path) -> None:
    path = _lightning_file(tmp_path, lstm={"hidden_size": 256, "num_layers": 4})
    with pytest.raises(ValueError, match="lstm.hidden_size=256"):
        CONVERTERS["pyannote-segmentation"].read(path)
    with pytest.raises(ValueError, match="'state_dict' of tensors"):
        pyannote_segmentation_state_dict({"weights": 1}, "x.bin")


def test_the_shared_segmentation_checkpoint_loads_strictly() -> None:
    if not CHECKPOINT.is_file():
        pytest.skip(f"segmentation-3.0 checkpoint not found at {CHECKPOINT}")
    _, state = CONVERTERS["pyannote-segmentation"].read(CHECKPOINT)
    model = PyanNet()
    model.load_state_dict(state, strict=True)
    # the buffers the checkpoint carries are the ones voxvec computes
    torch.testing.assert_close(
        model.sincnet.conv1d[0].filterbank.n_, PyanNet().sincnet.conv1d[0].filterbank.n_
    )
    torch.testing.assert_close(
        state["sincnet.conv1d.0.filterbank.window_"],
        PyanNet().sincnet.conv1d[0].filterbank.window_,
        atol=1e-4,
        rtol=0,
    )
