"""Named pretrained models: the spec table, downloads, and :func:`load_model`.

:func:`load_model` accepts three things:

- a name from :func:`list_pretrained` (e.g. ``"convgru-rf5"``) or an alias of one (:data:`ALIASES`:
  ``"voxvec-default"`` is the current default's versioned name): its weights come from a file
  bundled in ``voxvec/assets/`` or are downloaded once into ``torch.hub.get_dir()/checkpoints``
  (checked against the spec's sha256 when it has one);
- a path to a voxvec bundle (:mod:`voxvec.weights.bundle`): weights, config and model card in one
  ``.safetensors`` file;
- a path to a file of a foreign format that a converter reads (:mod:`voxvec.weights.converters`:
  the original "simple speaker embeddings" release files, 3D-Speaker CAM++ state dicts), detected
  by content; a file with the pinned sha256 of a named model gets that model's card.

Downloaded files live in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``);
offline, copy a model's file there (or pass its path to :func:`load_model`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from voxvec.models import SpeakerEncoder
from voxvec.weights.bundle import load_bundle
from voxvec.weights.converters import detect_converter, get_converter
from voxvec.weights.state import model_from_state_dict, weights_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "voxvec-default"
"""The name :func:`load_model` uses when given none: an alias of the current default's
versioned name (:data:`ALIASES`), so that code naming a version keeps its model when the
default moves on."""

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

_RF5_RELEASES = "https://github.com/RF5/simple-speaker-embedding/releases/download"
_CAMPPLUS_ZH_EN = "iic/speech_campplus_sv_zh_en_16k-common_advanced"
_PATH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


_CAMPPLUS_ZH_EN_CARD: Mapping[str, Any] = {
    "architecture": (
        "campplus (CAM++: 2-D residual front module, strided TDNN, 3 densely connected blocks of "
        "12/24/16 context-aware-masking layers, statistics pooling, 192-d)"
    ),
    "input": (
        "16 kHz mono waveform -> 80-bin Kaldi log mel filterbank (25 ms Povey window, 10 ms hop, "
        "pre-emphasis 0.97, DC removal, snipped edges, no dither, 20 Hz-Nyquist), per-utterance "
        "mean subtracted"
    ),
    "origin": (
        f"ModelScope {_CAMPPLUS_ZH_EN}, file campplus_cn_en_common.pt, unchanged (a plain state "
        "dict, converted on load by the '3dspeaker' converter); code and paper: Wang et al., "
        "'CAM++: A Fast and Efficient Network for Speaker Verification Using Context-Aware "
        "Masking', Interspeech 2023 (arXiv 2303.00332), github.com/modelscope/3D-Speaker"
    ),
    "licence": (
        "Apache-2.0; copyright 3D-Speaker, Alibaba DAMO Academy (github.com/modelscope/3D-Speaker)"
        "; voxvec re-implements the architecture and reads the weights unchanged"
    ),
    "training": {
        "data": (
            "as published by its authors: a large Mandarin + English speaker corpus (the "
            "'common advanced' zh_en model); none of voxvec's data"
        ),
    },
    "thresholds": {"eer": 0.2039, "far1": 0.3553},
    "thresholds_from": (
        "valid split (47 held-out speakers of 5 corpora, 40,000 seeded trials, half target), "
        "default Embedder options: EER 14.94% (95% CI 2.83-17.79) at cosine 0.2039; 1% false "
        "accepts at 0.3553 (false rejects 46.3%). Pooled over corpora whose score scales differ "
        "(1 s Arabic words, 8 kHz digits): per corpus it is far better (held_out_results). "
        "Command: voxvec eval --model campplus-zh-en --manifest configs/splits/default/valid.csv "
        "--n-trials 40000 --min-speech-s 0 --n-bootstrap 200"
    ),
    "held_out_results": {
        "command": (
            "python bench/accuracy.py --manifest configs/splits/default/test.csv "
            "--model campplus-zh-en --vad energy (the trials of voxvec-default and Resemblyzer)"
        ),
        "eer_percent_clean_per_corpus": {
            "speechocean762": 1.75,
            "common-voice-subsets": 5.17,
            "arabic-speech-commands": 13.64,
            "librispeech-train-clean-100-sample (4 s segments)": 0.0,
            "free-spoken-digits (2 test speakers, 8 kHz)": 23.48,
        },
        "measured": "2026-12-01, default Embedder options (the network computes in float32)",
    },
    "parity": (
        "cosine >= 0.99999994 with 3D-Speaker's own code on 5 real files "
        "(tests/models/test_campplus.py)"
    ),
    "diarization": {  # printed by: python bench/diarize_tune.py --model <this checkpoint>
        "spectral": {"prune": 0.2, "merge_threshold": 0.6},
        "chosen_on": (
            "valid split: 12 seeded conversations of 2-6 speakers, 6 of 2-4 speakers of one "
            "corpus and 8 one-speaker recordings; least DER + 0.1 x wrong-count rate"
        ),
        "valid_der": 0.1087,
        "valid_count_accuracy": 0.8846,
        "command": (
            "python bench/diarize_tune.py "
            "--model ../shared/models/campplus-zh-en-common/campplus_cn_en_common.pt"
        ),
        "date": "2026-12-01",
    },
    "limits": [
        "Scores are calibrated differently across domains: one threshold pooled over corpora "
        "is far from each corpus's own EER point.",
        "One voice per input; 8 kHz audio is resampled to 16 kHz (narrow band hurts it).",
    ],
}


@dataclass(frozen=True)
class PretrainedSpec:
    """One named pretrained model.

    Attributes:
        name: what :func:`load_model` is given.
        arch: the registered architecture.
        sample_rate: the model's input sample rate in Hz.
        frontend: the kind of the model's front-end (``"logmel"``, ``"waveform"`` ...).
        n_params: number of parameters.
        description: one line: what it is, what it was trained on, its published results.
        config: the architecture's config fields ({} = defaults) for converted files; bundles
            carry their own.
        url: where to download the weights file (exactly one of ``url`` and ``asset``).
        asset: the weights file's name in ``voxvec/assets/``.
        sha256: hex sha256 of the file, or a prefix of it (as torch.hub names files); None
            when not pinned.
        converter: the name of the converter that reads the file (see
            :data:`voxvec.weights.converters.CONVERTERS`); None: the file is a voxvec bundle.
        card_fields: further model-card fields of a converted file (bundles carry their own
            card): licence, training data, thresholds, held-out results ...
    """

    name: str
    arch: str
    sample_rate: int
    frontend: str
    n_params: int
    description: str
    config: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None
    asset: str | None = None
    sha256: str | None = None
    converter: str | None = None
    card_fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.asset is None):
            raise ValueError(f"spec {self.name!r}: give exactly one of url and asset")

    @property
    def filename(self) -> str:
        """The weights file's name."""
        return self.asset if self.asset is not None else str(self.url).rsplit("/", 1)[-1]

    @property
    def local_path(self) -> Path:
        """Where the weights file is read from: the bundled asset, or the torch hub cache."""
        if self.asset is not None:
            return ASSETS_DIR / self.asset
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    @property
    def source(self) -> str:
        """The download URL or the bundled asset's path."""
        return self.url if self.url is not None else str(self.local_path)

    def card(self) -> dict[str, Any]:
        """What the spec says about the model, as model-card fields."""
        return {
            "name": self.name,
            "arch": self.arch,
            "sample_rate": self.sample_rate,
            "frontend": self.frontend,
            "n_params": self.n_params,
            "description": self.description,
            "source": self.source,
            **self.card_fields,
        }


_SPECS: Mapping[str, PretrainedSpec] = types.MappingProxyType(
    {
        spec.name: spec
        for spec in (
            PretrainedSpec(
                name="gru-rf5",
                arch="gru",
                sample_rate=22050,
                frontend="logmel",
                n_params=9_242_368,
                description=(
                    "original GRU (RF5, Nov 2020) on 22.05 kHz Tacotron log-mels; VCC 2018, VCTK, "
                    "LibriSpeech, CommonVoice English; EER 7.97% LibriSpeech test-clean"
                ),
                url=f"{_RF5_RELEASES}/0.1/gru-wrapped-f1f850.pth",
                sha256="f1f850",
                converter="rf5",
            ),
            PretrainedSpec(
                name="convgru-rf5",
                arch="convgru",
                sample_rate=16000,
                frontend="waveform",
                n_params=31_753_472,
                description=(
                    "original ConvGRU (RF5, Dec 2021) on raw 16 kHz waveforms; VCTK, LibriSpeech, "
                    "VoxCeleb 1 & 2; EER 2.95% LibriSpeech test-clean, 3.20% VoxCeleb1 test"
                ),
                url=f"{_RF5_RELEASES}/v1.0/convgru_ckpt_00700000_strip.pt",
                converter="rf5",
            ),
            PretrainedSpec(
                name="convgru-rf5-sc09",
                arch="convgru",
                sample_rate=16000,
                frontend="waveform",
                n_params=31_753_472,
                description=(
                    "original ConvGRU (RF5) trained on the Google Speech Commands digits (SC09)"
                ),
                url=f"{_RF5_RELEASES}/0.1/convgru_sc09_ckpt_00077500-strip.pt",
                converter="rf5",
            ),
            PretrainedSpec(
                name="voxvec-default-v1",
                arch="ecapa",
                sample_rate=16000,
                frontend="logmel",
                n_params=2_148_320,
                description=(
                    "voxvec's first default (until 0.2.0): ECAPA-TDNN-lite on 16 kHz log-mels, "
                    "trained by configs/voxvec-default.yaml on 460 speakers of 5 corpora in 6 "
                    "languages; ships inside the package"
                ),
                asset="voxvec-default-v1.safetensors",
            ),
            PretrainedSpec(
                name="voxvec-default-v2",
                arch="ecapa",
                sample_rate=16000,
                frontend="logmel",
                n_params=2_148_320,
                description=(
                    "voxvec's second default (chosen on validation; what voxvec-default names): "
                    "voxvec-default-v1 fine-tuned 3,000 steps with distillation from CAM++ "
                    "(Apache-2.0), AAM softmax and pause augmentation on the same 460 speakers; "
                    "ships inside the package"
                ),
                asset="voxvec-default-v2.safetensors",
            ),
            PretrainedSpec(
                name="campplus-zh-en",
                arch="campplus",
                sample_rate=16000,
                frontend="kaldi_fbank",
                n_params=6_848_544,
                description=(
                    "3D-Speaker CAM++ 'zh_en 16k common advanced' (Alibaba DAMO Academy, "
                    "Apache-2.0) on 80-bin Kaldi filterbanks, 192-d; trained by its authors on a "
                    "large Mandarin + English speaker corpus; downloaded once (28 MB)"
                ),
                url=f"https://modelscope.cn/models/{_CAMPPLUS_ZH_EN}/resolve/master/"
                "campplus_cn_en_common.pt",
                sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
                converter="3dspeaker",
                card_fields=_CAMPPLUS_ZH_EN_CARD,
            ),
        )
    }
)


ALIASES: Mapping[str, str] = types.MappingProxyType({DEFAULT_MODEL: "voxvec-default-v2"})
"""Names that stand for a versioned spec: ``voxvec-default`` is whichever model is the default
now; a versioned name (``voxvec-default-v1``) always loads the same weights."""


def list_pretrained() -> list[PretrainedSpec]:
    """Every named pretrained model, in table order (aliases not repeated: :data:`ALIASES`)."""
    return list(_SPECS.values())


def _names() -> list[str]:
    return sorted({*_SPECS, *ALIASES})


def get_spec(name: str) -> PretrainedSpec:
    """The spec called ``name``, or the one an alias (:data:`ALIASES`) stands for.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    try:
        return _SPECS[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(f"unknown pretrained model {name!r}; available: {_names()}") from None


def bundled_with_fingerprint(fingerprint: str) -> str | None:
    """The name of the bundled model whose weights have this :func:`weights_fingerprint`, or None.

    Reads every bundled asset (a few MB each), so it is meant for messages: embeddings recorded
    as the alias ``voxvec-default`` name the versioned model that made them.
    """
    for spec in _SPECS.values():
        if spec.asset is not None and spec.local_path.is_file():
            model, _ = load_bundle(spec.local_path)
            if weights_fingerprint(model) == fingerprint:
                return spec.name
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(spec: PretrainedSpec, progress: bool = True) -> Path:
    """The spec's weights file: the bundled asset, or the download cached in the torch hub dir.

    Raises:
        FileNotFoundError: a bundled asset is missing.
        OSError / RuntimeError: the download failed or its hash did not match.
    """
    path = spec.local_path
    if spec.asset is not None:
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained model {spec.name!r}: its bundled weights '{path}' are missing "
                "(a source checkout without the asset, or a broken install: reinstall voxvec)"
            )
        return path
    url = str(spec.url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, path)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=spec.sha256, progress=progress)
    except RuntimeError as e:  # hash mismatch: torch.hub has removed the file
        raise RuntimeError(
            f"pretrained model {spec.name!r}: download from {url} failed: {e}"
        ) from e
    except OSError as e:
        raise OSError(
            f"pretrained model {spec.name!r}: cannot download {url} ({e}); download it by hand "
            f"and pass its path to load_model, or save it as '{path}'"
        ) from e
    if spec.sha256 is None:
        logger.info("%s: sha256 %s (not pinned in the spec)", path.name, _sha256(path))
    return path


def _is_safetensors(path: Path) -> bool:
    """True when ``path`` starts like a safetensors file (u64 header size, then a JSON object)."""
    with path.open("rb") as f:
        head = f.read(9)
    return (
        len(head) == 9
        and 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size
        and head[8:] == b"{"
    )


def _convert(
    path: Path, converter: str, arch: str | None, config: Mapping[str, Any]
) -> SpeakerEncoder:
    """Read ``path`` with ``converter`` and fill a model of its architecture (``arch`` if given)."""
    found, state_dict = get_converter(converter).read(path)
    if arch is not None and found != arch:
        raise ValueError(f"'{path}' holds a '{found}' model, expected '{arch}'")
    return model_from_state_dict(found, dict(config), state_dict, f"'{path}'")


def _load_spec(spec: PretrainedSpec, progress: bool) -> tuple[SpeakerEncoder, dict[str, Any]]:
    path = fetch(spec, progress)
    if spec.converter is not None:
        return _convert(path, spec.converter, spec.arch, spec.config), spec.card()
    model, card = load_bundle(path)
    if model.arch != spec.arch:
        raise ValueError(
            f"pretrained model {spec.name!r}: '{path}' holds a '{model.arch}' model, "
            f"expected '{spec.arch}'"
        )
    return model, {**spec.card(), **card}


def _known_card(path: Path, converter: str) -> dict[str, Any]:
    """The card of the named model whose pinned file ``path`` is (the same converter and full
    sha256; ``source`` is ``path``), so that a copy loaded by path has its thresholds; else {}."""
    specs = [s for s in _SPECS.values() if s.converter == converter and len(s.sha256 or "") == 64]
    if not specs:
        return {}
    digest = _sha256(path)
    for spec in specs:
        if spec.sha256 == digest:
            return {**spec.card(), "source": str(path)}
    return {}


def load_model(
    name_or_path: str | os.PathLike | None = None, *, progress: bool = True
) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """Load a pretrained model by name, a voxvec bundle, or an original release file.

    Args:
        name_or_path: a name from :func:`list_pretrained` or :data:`ALIASES`; a path to a
            bundle; a path to an original RF5 release file, a PyTorch state dict of a
            ``gru``/``convgru`` model or a 3D-Speaker CAM++ checkpoint (detected by content);
            None for the default model (:data:`DEFAULT_MODEL`).
        progress: show a progress bar while downloading.

    Returns:
        ``(model, card)``: the model in eval mode on the CPU, and its model card (name,
        architecture, source, thresholds ... ; ``arch`` and ``source`` at least).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        FileNotFoundError: a path that does not exist, or a missing bundled asset.
        OSError / RuntimeError: the download failed or its hash did not match.
        ValueError: the file is not a model voxvec reads, or its weights do not fit.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and (name_or_path in _SPECS or name_or_path in ALIASES):
        return _load_spec(get_spec(name_or_path), progress)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if _is_safetensors(path):
            model, card = load_bundle(path)
        else:
            converter = detect_converter(path)
            model, card = _convert(path, converter, None, {}), _known_card(path, converter)
        return model, {"arch": model.arch, "source": str(path), **card}
    text = os.fspath(name_or_path)
    if path.exists():
        raise ValueError(f"'{path}' is not a file: pass a model file or a pretrained name")
    if isinstance(name_or_path, str) and not (
        os.sep in text or "/" in text or text.endswith(_PATH_SUFFIXES)
    ):
        raise KeyError(
            f"unknown pretrained model {text!r} (and no such file); available: {_names()}"
        )
    raise FileNotFoundError(f"model file not found: '{path}'")
