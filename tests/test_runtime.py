"""voxvec.runtime: device and precision vocabulary, and the one batched primitive."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxvec.audio import windows
from voxvec.models import SpeakerEncoder, create_model
from voxvec.runtime import (
    PRECISIONS,
    embed_waveforms,
    native_bfloat16,
    resolve_device,
    resolve_precision,
)


@pytest.fixture(scope="module")
def model() -> SpeakerEncoder:
    torch.manual_seed(0)
    return create_model("ecapa", channels=32, se_channels=8, mfa_channels=48).eval()


def _waves(lengths: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_device_vocabulary() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'auto', 'cpu'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_precision_vocabulary() -> None:
    cpu = torch.device("cpu")
    assert PRECISIONS == ("auto", "float32", "bfloat16")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"
    assert resolve_precision("auto", cpu) == ("bfloat16" if native_bfloat16(cpu) else "float32")
    assert not native_bfloat16(torch.device("meta"))
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, True, "bfloat16"), (False, True, "float32"), (False, False, "float32")],
)
def test_auto_precision_wants_amx_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: str
) -> None:
    """AVX512-BF16 without AMX: the default model 1.06-1.16x slower (BENCHMARKS.md, "Precision")."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_embed_waveforms_keeps_input_order_and_equals_one_by_one(model: SpeakerEncoder) -> None:
    waves = _waves([9000, 2000, 16000, 5000, 700], seed=1)
    together = embed_waveforms(model, waves, batch_size=2)
    assert together.shape == (5, model.embed_dim) and together.dtype == torch.float32
    for i, wave in enumerate(waves):
        alone = embed_waveforms(model, [torch.from_numpy(wave)], batch_size=1)
        torch.testing.assert_close(together[i], alone[0], atol=1e-4, rtol=0)


def test_embed_waveforms_sorts_batches_by_length(model: SpeakerEncoder) -> None:
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        embed_waveforms(model, _waves([1000, 8000, 3000, 7000], seed=2), batch_size=2)
    finally:
        hook.remove()
    assert shapes == [(2, 8000), (2, 3000)]  # the two longest together, then the two shortest


def test_a_cpu_pass_holds_at_most_cpu_batch_s_of_audio(
    model: SpeakerEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(windows, "CPU_BATCH_S", 16000 / model.sample_rate)  # 16,000 samples
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        waves = _waves([7000, 1000, 8000, 3000, 2000, 7500], seed=2)
        together = embed_waveforms(model, waves, batch_size=4)
    finally:
        hook.remove()
    # 2 x 8000 fit; then 7000 + 3000 (a third item would make 3 x 7000 > 16,000); then the rest.
    assert shapes == [(2, 8000), (2, 7000), (2, 2000)]
    for i, wave in enumerate(waves):
        alone = embed_waveforms(model, [torch.from_numpy(wave)], batch_size=1)
        torch.testing.assert_close(together[i], alone[0], atol=1e-4, rtol=0)


def test_embed_waveforms_bfloat16_is_close(model: SpeakerEncoder) -> None:
    waves = _waves([12000, 6000], seed=3)
    full = embed_waveforms(model, waves, precision="float32")
    half = embed_waveforms(model, waves, precision="bfloat16")
    assert half.dtype == torch.float32
    assert not torch.equal(full, half)  # the model really ran in bfloat16
    assert float((full * half).sum(1).min()) > 0.99  # measured: 0.998


def test_embed_waveforms_errors(model: SpeakerEncoder) -> None:
    assert embed_waveforms(model, []).shape == (0, model.embed_dim)
    with pytest.raises(ValueError, match="batch_size"):
        embed_waveforms(model, _waves([1000], 0), batch_size=0)
    with pytest.raises(ValueError, match="precision"):
        embed_waveforms(model, _waves([1000], 0), precision="half")
    with pytest.raises(ValueError, match=rf"lengths must lie in \[{model.min_samples}, "):
        embed_waveforms(model, _waves([4000, 100], 0))


def test_a_float32_only_model_reports_float32(model: SpeakerEncoder) -> None:
    from voxvec.models.campplus import CAMPPlus

    cpu = torch.device("cpu")
    assert not CAMPPlus.supports_bfloat16 and model.supports_bfloat16
    small = create_model("campplus", embed_dim=8)
    assert isinstance(small, CAMPPlus)
    assert resolve_precision("bfloat16", cpu, small) == "float32"
    assert resolve_precision("bfloat16", cpu, model) == "bfloat16"


def test_default_num_threads_follows_omp_then_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from voxvec.runtime import MAX_DEFAULT_THREADS, default_num_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS must be a positive integer"):
        default_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert default_num_threads() == MAX_DEFAULT_THREADS  # idle: capped
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_num_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 0.0, 0.0))
    assert default_num_threads() == 1  # one of two cores busy
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 0.0, 0.0))
    assert default_num_threads() == 1  # never below one


def test_set_num_threads() -> None:
    from voxvec.runtime import set_num_threads

    before = torch.get_num_threads()
    try:
        assert set_num_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_num_threads("auto") == torch.get_num_threads() >= 1
        for bad in (0, -2, 1.5, True, "many"):
            with pytest.raises(ValueError, match="num_threads must be 'auto' or a positive"):
                set_num_threads(bad)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)
