"""torch.hub entry points: hubconf.py, the original wrappers' contracts and conveniences."""

from __future__ import annotations

import csv
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import voxvec
from voxvec import hub
from voxvec.audio import io
from voxvec.models import create_model
from voxvec.weights import ALIASES, DEFAULT_MODEL, get_spec

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speech_file(shared_data: Path) -> Path:
    with (shared_data / "speechocean762" / "manifest.csv").open() as f:
        first = next(csv.DictReader(f))
    return shared_data / "speechocean762" / first["path"]


@pytest.fixture(scope="module")
def gru() -> hub.GRUEmbedder:
    torch.manual_seed(0)
    return hub.gru_embedder(pretrained=False)


def test_hub_list_shows_only_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.hub.list only takes GitHub repos: point its repo cache at this checkout.
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *a, **k: str(REPO_ROOT))
    assert sorted(torch.hub.list("owner/voxvec")) == [
        "convgru_embedder",
        "convgru_embedder_sc09",
        "gru_embedder",
        "voxvec_default",
    ]


def test_hub_load_local_convgru() -> None:
    model = torch.hub.load(
        str(REPO_ROOT), "convgru_embedder", source="local", pretrained=False, device="cpu"
    )
    assert isinstance(model, hub.ConvGRUEmbedder) and not model.training
    assert "model.conv_encoder.conv_layers.0.2.weight" in model.state_dict()
    x = 0.1 * torch.randn(2, 4000)
    loud = 20 * x
    with torch.no_grad():
        emb = model(torch.cat([x, loud, loud.clamp(-1, 1)]), torch.tensor([4000] * 6))
    assert emb.shape == (6, 256)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(6))
    # Like the original, input is clamped to [-1, 1].
    torch.testing.assert_close(emb[2:4], emb[4:6])


def test_hub_load_local_gru() -> None:
    model = torch.hub.load(str(REPO_ROOT), "gru_embedder", source="local", pretrained=False)
    assert isinstance(model, hub.GRUEmbedder)
    assert "model.rnn_stack.weight_ih_l0" in model.state_dict()
    with torch.no_grad():
        assert model(torch.randn(3, 20, 80) - 6).shape == (3, 256)


def test_gru_hparams(gru: hub.GRUEmbedder, capsys: pytest.CaptureFixture[str]) -> None:
    # The original's hparams is an object with attributes (hp.audio_waveglow).
    hp = gru.hparams
    assert (hp.filter_length, hp.hop_length, hp.win_length) == (1024, 256, 1024)
    assert (hp.n_mel_channels, hp.sampling_rate) == (80, 22050)
    assert (hp.mel_fmin, hp.mel_fmax) == (0.0, 8000.0)
    assert (hp.max_wav_value, hp.min_log_value, hp.max_log_value) == (32768.0, -11.52, 1.2)
    assert hp.silence_threshold_db == -10.0
    gru.print_hparams()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "filter_length : 1024" and lines[4] == "sampling_rate : 22050"
    assert lines[-1] == "silence_threshold_db : -10.0"


def test_gru_options() -> None:
    raw = hub.gru_embedder(pretrained=False, normalize=False, dropout=0.1)
    assert raw.model.config.normalize is False and raw.model.config.dropout == 0.1
    with pytest.raises(ValueError, match="loader"):
        hub.gru_embedder(pretrained=False, loader="librosa")


def test_gru_melspec_from_file_and_array(gru: hub.GRUEmbedder, speech_file: Path) -> None:
    mel = gru.melspec_from_file(speech_file)
    n_samples = io.load(speech_file, 22050).size
    assert mel.shape == (n_samples // 256 + 1, 80) and mel.dtype == torch.float32
    assert float(mel.min()) >= np.log(1e-5) - 1e-4 and float(mel.max()) < 5.0
    wav_16k = io.load(speech_file, 16000)
    torch.testing.assert_close(gru.melspec_from_array(wav_16k, 16000), mel)
    wav_22k = torch.from_numpy(io.load(speech_file, 22050))
    torch.testing.assert_close(gru.melspec_from_array(wav_22k, 22050), mel)
    torch.testing.assert_close(gru.melspec_from_array(wav_22k), mel)
    with torch.no_grad():
        emb = gru(mel[None])
    assert emb.shape == (1, 256)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1))


def test_gru_melspec_rejects_bad_arrays(gru: hub.GRUEmbedder) -> None:
    with pytest.raises(ValueError, match="melspec_from_array"):
        gru.melspec_from_array(np.zeros((2, 100), dtype=np.float32), 22050)
    with pytest.raises(ValueError, match="NaN"):
        gru.melspec_from_array(np.full(1000, np.nan, dtype=np.float32), 22050)


def test_gru_entry_point_uses_the_released_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline: the released GRU file (synthetic, original layout) in the torch hub cache."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    torch.manual_seed(1)
    gru_source = create_model("gru")
    gru_file = cache / get_spec("gru-rf5").filename
    torch.save(OrderedDict((f"model.{k}", v) for k, v in gru_source.state_dict().items()), gru_file)

    model = hub.gru_embedder(pretrained=True, normalize=False)
    assert model.model.config.normalize is False
    for key, value in gru_source.state_dict().items():
        assert torch.equal(model.state_dict()[f"model.{key}"], value)


def test_convgru_entry_points_load_their_release(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(2)
    source = create_model("convgru").eval()
    asked: list[str] = []

    def fake_load_model(name: str, *, progress: bool) -> tuple:
        asked.append(name)
        return source, {}

    monkeypatch.setattr(hub, "load_model", fake_load_model)
    for entry in (hub.convgru_embedder, hub.convgru_embedder_sc09):
        model = entry(pretrained=True, progress=False, device="cpu")
        assert model.model is source and not model.training
    assert asked == ["convgru-rf5", "convgru-rf5-sc09"]


def test_hub_load_local_voxvec_default_is_bundled_and_offline(shared_data: Path) -> None:
    embedder = torch.hub.load(str(REPO_ROOT), "voxvec_default", source="local", device="cpu")
    assert embedder.card["name"] == ALIASES[DEFAULT_MODEL] and embedder.threshold is not None
    wav = shared_data / "librispeech-train-clean-100-sample/audio/103-1240-0000.flac"
    emb = embedder.embed([wav, wav])
    assert emb.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    untrained = torch.hub.load(
        str(REPO_ROOT), "voxvec_default", source="local", pretrained=False, device="cpu"
    )
    assert untrained.card == {} and untrained.model.arch == "ecapa"
    # Embedder options pass through the entry point.
    exact = torch.hub.load(str(REPO_ROOT), "voxvec_default", source="local", device="cpu",
                           precision="float32", window_s=None)  # fmt: skip
    assert exact.precision == "float32" and exact.window is None
    np.testing.assert_allclose(
        exact.embed(wav), voxvec.load(precision="float32", window_s=None).embed(wav), atol=1e-5
    )
