"""CAM++: parity with 3D-Speaker's own code on real speech, masking across segments, config.

The reference embeddings in tests/assets/campplus_reference.json were computed by 3D-Speaker's
``CAMPPlus`` (PyPI ``speakerlab``) with kaldi-native-fbank features, in a separate venv
(``bench/campplus_reference.py --record``). Measured here: cosine >= 0.99999994 on every file,
one by one, padded in one batch, and through ``voxvec.load(...).embed`` on the files; the bound
is 0.9999.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

import voxvec
from voxvec.models import create_model
from voxvec.models.campplus import CAMPPlus, CAMPPlusConfig, _conv_bn
from voxvec.weights import load_model

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "campplus_reference.json"
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def pretrained(campplus_checkpoint: Path) -> CAMPPlus:
    model, _ = load_model(campplus_checkpoint)
    assert isinstance(model, CAMPPlus)
    return model


def waveforms(reference: dict, data: Path) -> list[torch.Tensor]:
    import soundfile as sf

    wavs = []
    for item in reference["files"]:
        wav, rate = sf.read(str(data / item["path"]), dtype="float32")
        assert rate == 16000 and len(wav) == item["n_samples"]
        wavs.append(torch.from_numpy(wav))
    return wavs


def cosines(embeddings: torch.Tensor, reference: dict) -> list[float]:
    expected = torch.tensor([item["embedding"] for item in reference["files"]])
    return F.cosine_similarity(embeddings.float(), expected, dim=-1).tolist()


def test_embeddings_match_3dspeaker(
    pretrained: CAMPPlus, reference: dict, shared_data: Path
) -> None:
    wavs = waveforms(reference, shared_data)
    lengths = torch.tensor([len(w) for w in wavs])
    with torch.no_grad():
        alone = torch.cat([pretrained(w[None]) for w in wavs])
        batched = pretrained(pad_sequence(wavs, batch_first=True), lengths)
        # The network computes in float32 under autocast (bfloat16 would move it past the bound).
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = pretrained(pad_sequence(wavs, batch_first=True), lengths)
    for name, embeddings in (("alone", alone), ("batched", batched), ("autocast", autocast)):
        assert min(cosines(embeddings, reference)) >= MIN_COSINE, name
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_embedder_on_the_files_matches_3dspeaker(
    campplus_checkpoint: Path, reference: dict, shared_data: Path
) -> None:
    embedder = voxvec.load(campplus_checkpoint, device="cpu")
    paths = [shared_data / item["path"] for item in reference["files"]]
    embeddings = torch.from_numpy(np.asarray(embedder.embed(paths, batch_size=3)))
    assert embeddings.shape == (len(paths), 192)
    assert min(cosines(embeddings, reference)) >= MIN_COSINE


def test_fbank_matches_the_recorded_reference_features(
    pretrained: CAMPPlus, reference: dict, shared_data: Path
) -> None:
    for wav, item in zip(waveforms(reference, shared_data), reference["files"], strict=True):
        feats, n_frames = pretrained.frontend(wav[None], torch.tensor([len(wav)]))
        assert int(n_frames[0]) == item["fbank_frames"]
        assert abs(float(feats[0].abs().mean()) - item["fbank_abs_mean"]) < 1e-4
        np.testing.assert_allclose(feats[0, 0, :8].numpy(), item["fbank_frame0_head"], atol=2e-3)


def test_padding_invariance_across_context_segments() -> None:
    # The registry-wide test uses inputs shorter than one 100-frame segment (2 s); here items
    # end in different segments, so the segment means must ignore the padding.
    torch.manual_seed(0)
    model = create_model("campplus").eval()
    gen = torch.Generator().manual_seed(3)
    n_samples = [int(s * 16000) for s in (4.3, 2.05, 0.9, 6.0)]
    wav = 5.0 * torch.randn(len(n_samples), max(n_samples), generator=gen)
    for i, n in enumerate(n_samples):
        wav[i, :n] = 0.1 * torch.randn(n, generator=gen)
    with torch.no_grad():
        batched = model(wav, torch.tensor(n_samples))
        for i, n in enumerate(n_samples):
            torch.testing.assert_close(
                batched[i : i + 1], model(wav[i : i + 1, :n]), atol=1e-4, rtol=0
            )


def test_folded_batch_norm_equals_conv_then_norm() -> None:
    torch.manual_seed(1)
    for conv, norm, shape in (
        (nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), (2, 4, 5, 7)),
        (nn.Conv1d(4, 6, 1, bias=False), nn.BatchNorm1d(6, affine=False), (2, 4, 9)),
    ):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        if norm.affine:
            nn.init.uniform_(norm.weight, 0.5, 1.5)
            nn.init.uniform_(norm.bias, -1, 1)
        x = torch.randn(shape)
        norm.eval()
        torch.testing.assert_close(_conv_bn(conv, norm, x), norm(conv(x)), atol=1e-5, rtol=1e-5)
        norm.train()
        torch.testing.assert_close(_conv_bn(conv, norm, x), norm(conv(x)))


def test_trains_with_gradients_to_every_parameter() -> None:
    model = create_model("campplus", block_layers=(2, 2, 2)).train()
    wav = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(4))
    model(wav, torch.tensor([8000, 6000])).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_default_config_is_the_published_architecture() -> None:
    model = create_model("campplus")
    assert sum(p.numel() for p in model.parameters()) == 6_848_544
    assert model.embed_dim == 192 and model.sample_rate == 16000 and model.min_samples == 560
    assert model.frontend.kind == "kaldi_fbank"
    assert len(model.state_dict()) == 937  # as many tensors as 3D-Speaker's checkpoint


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"block_kernels": (3, 3)}, "of one length"),
        ({"block_layers": ()}, "non-empty"),
        ({"tdnn_kernel": 4}, "must be odd"),
        ({"fcm_blocks": (2,)}, "fcm_blocks must be 2 positive counts"),
        ({"segment_frames": 0}, "segment_frames must be positive"),
    ],
)
def test_invalid_config_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CAMPPlusConfig(**fields)


def test_filterbank_width_must_divide_by_8() -> None:
    from voxvec.audio.kaldi import KaldiFbankConfig

    with pytest.raises(ValueError, match="multiple of 8"):
        CAMPPlusConfig(frontend=KaldiFbankConfig(n_mels=60))


def test_wrong_features_are_refused() -> None:
    model = create_model("campplus", block_layers=(1, 1, 1)).eval()
    with pytest.raises(ValueError, match=r"CAM\+\+ expects filterbanks \(B, n_frames, 80\)"):
        model.encode(torch.zeros(1, 50, 64), torch.tensor([50]))
