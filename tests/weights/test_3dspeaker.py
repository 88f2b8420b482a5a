"""The "3dspeaker" converter and the campplus-zh-en named model (never downloads)."""

from __future__ import annotations

import hashlib
import re
import urllib.error
from pathlib import Path

import pytest
import torch

from voxvec.models import create_model
from voxvec.weights import get_spec, load_model
from voxvec.weights.converters import (
    campplus_state_dict,
    detect_converter,
    looks_like_3dspeaker_campplus,
    read_3dspeaker,
)


def official_name(key: str) -> str:
    """voxvec campplus parameter name -> 3D-Speaker's (written out here, independently)."""
    key = re.sub(r"^fcm\.", "head.", key)
    key = re.sub(r"^tdnn\.conv\.", "xvector.tdnn.linear.", key)
    key = re.sub(r"^tdnn\.norm\.", "xvector.tdnn.nonlinear.batchnorm.", key)
    match = re.match(r"blocks\.(\d+)\.layers\.(\d+)\.", key)
    if match:
        block, layer = int(match[1]) + 1, int(match[2]) + 1
        rest = key[match.end() :]
        for ours, theirs in (
            ("norm1.", "nonlinear1.batchnorm."),
            ("conv1.", "linear1."),
            ("norm2.", "nonlinear2.batchnorm."),
            ("cam.local.", "cam_layer.linear_local."),
            ("cam.context_down.", "cam_layer.linear1."),
            ("cam.context_up.", "cam_layer.linear2."),
        ):
            if rest.startswith(ours):
                return f"xvector.block{block}.tdnnd{layer}.{theirs}{rest[len(ours) :]}"
    match = re.match(r"transits\.(\d+)\.(norm|conv)\.", key)
    if match:
        part = "nonlinear.batchnorm" if match[2] == "norm" else "linear"
        return f"xvector.transit{int(match[1]) + 1}.{part}.{key[match.end() :]}"
    key = re.sub(r"^out_norm\.", "xvector.out_nonlinear.batchnorm.", key)
    key = re.sub(r"^embedding_norm\.", "xvector.dense.nonlinear.batchnorm.", key)
    return re.sub(r"^embedding\.", "xvector.dense.linear.", key)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A seeded campplus model saved as 3D-Speaker saves its checkpoints."""
    torch.manual_seed(0)
    model = create_model("campplus").eval()
    state = {}
    for key, value in model.state_dict().items():
        state[official_name(key)] = value.unsqueeze(-1) if key == "embedding.weight" else value
    path = tmp_path_factory.mktemp("3dspeaker") / "campplus_cn_en_common.pt"
    torch.save(state, path)
    return path, model


def test_official_file_is_detected_and_loads_exactly(official_file) -> None:  # type: ignore[no-untyped-def]
    path, model = official_file
    assert detect_converter(path) == "3dspeaker"
    loaded, card = load_model(path)
    assert loaded.arch == "campplus" and card["source"] == str(path)
    assert "thresholds" not in card  # not the named model's file: none of its card
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    wav = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav), model(wav), atol=0, rtol=0)


def test_other_files_are_left_to_rf5(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"rnn_stack.weight": torch.zeros(2)}, plain)
    assert detect_converter(plain) == "rf5"
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert detect_converter(legacy) == "rf5"
    not_torch = tmp_path / "junk.pt"
    not_torch.write_bytes(b"not a checkpoint")
    assert detect_converter(not_torch) == "rf5"
    with pytest.raises(ValueError, match="as a plain PyTorch state dict"):
        read_3dspeaker(not_torch)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        detect_converter(tmp_path / "absent.pt")


def test_state_dict_mapping() -> None:
    weight = torch.zeros(192, 1024, 1)
    state = campplus_state_dict(
        {
            "module.xvector.dense.linear.weight": weight,
            "xvector.block2.tdnnd7.cam_layer.linear2.bias": torch.zeros(3),
            "xvector.transit3.linear.weight": torch.zeros(1),
        },
        "'x.pt'",
    )
    assert sorted(state) == [
        "blocks.1.layers.6.cam.context_up.bias",
        "embedding.weight",
        "transits.2.conv.weight",
    ]
    assert state["embedding.weight"].shape == (192, 1024)
    with pytest.raises(ValueError, match=r"'x.pt': parameter 'xvector.pool.weight' is not one"):
        campplus_state_dict({"xvector.pool.weight": torch.zeros(1)}, "'x.pt'")
    with pytest.raises(ValueError, match="expected a state dict"):
        campplus_state_dict({"head.conv1.weight": [1.0]}, "'x.pt'")
    assert looks_like_3dspeaker_campplus({"xvector.tdnn.linear.weight": 0, "head.a": 0})
    assert not looks_like_3dspeaker_campplus({"xvector.tdnn.linear.weight": 0, "other": 0})


def test_named_model_reads_the_file_from_the_hub_cache(
    campplus_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = get_spec("campplus-zh-en")
    assert spec.local_path == tmp_path / "hub" / "checkpoints" / "campplus_cn_en_common.pt"
    spec.local_path.parent.mkdir(parents=True)
    spec.local_path.symlink_to(campplus_checkpoint)
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    model, card = load_model("campplus-zh-en")
    assert model.arch == "campplus" and model.embed_dim == 192
    assert card["licence"].startswith("Apache-2.0") and "3D-Speaker" in card["licence"]
    assert card["source"] == spec.url and card["frontend"] == "kaldi_fbank"
    assert set(card["thresholds"]) == {"eer", "far1"} and "valid" in card["thresholds_from"]


def test_named_model_offline_says_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        assert hash_prefix == get_spec("campplus-zh-en").sha256  # the full sha256 is checked
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = tmp_path / "hub" / "checkpoints" / "campplus_cn_en_common.pt"
    with pytest.raises(OSError, match=f"save it as '{re.escape(str(expected))}'"):
        load_model("campplus-zh-en")


def test_spec_pins_the_official_file(campplus_checkpoint: Path) -> None:
    spec = get_spec("campplus-zh-en")
    assert spec.sha256 is not None and len(spec.sha256) == 64
    assert hashlib.sha256(campplus_checkpoint.read_bytes()).hexdigest() == spec.sha256
    assert spec.filename == campplus_checkpoint.name and spec.converter == "3dspeaker"
    _, card = load_model(campplus_checkpoint)  # loaded by path, the named model's card
    assert card["name"] == "campplus-zh-en" and card["source"] == str(campplus_checkpoint)
    assert card["thresholds"] == spec.card_fields["thresholds"]
