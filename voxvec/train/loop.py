"""The training loop behind ``voxvec train``: one process, or many under ``torchrun``.

:func:`train` runs a :class:`Trainer` built from a :class:`~voxvec.train.config.TrainConfig`:

- data: the ``train_csv`` files decoded in DataLoader workers (optionally through the on-disk
  cache), batches of N speakers x M utterances from
  :class:`~voxvec.data.sampler.SpeakerBatchSampler` (each rank its own shard), one random crop
  length per batch, then augmentation; with ``speed_speakers`` every file also appears at each
  of ``speed_factors``, counted as a new speaker;
- model and loss: the registered architecture (log-mels computed on the fly for log-mel models)
  and GE2E, AAM-softmax or both, wrapped together in DistributedDataParallel when distributed;
- optimisation: AdamW (decay on weight matrices only), the one-cycle or cosine schedule, gradient
  clipping, fp16 autocast with a grad scaler or bf16 autocast, optionally ``torch.compile``;
- logs (rank 0): tensorboard scalars every ``log_interval`` steps, a console line every
  ``console_interval``, a progress bar on terminals;
- validation (rank 0) every ``validation_interval`` steps: a fixed, seeded choice of
  ``valid_n_speakers`` x ``valid_n_utterances`` files of ``valid_csv``, each cut to its centre
  ``valid_max_s`` seconds and embedded in one pass of the model (no sliding windows, so it is cheap
  and comparable across runs). EER over all pairs of them, the GE2E loss over the speakers with
  all ``valid_n_utterances`` files (when the objective has a GE2E term), and a PCA projection
  image plus the tensorboard projector entry;
- checkpoints every ``checkpoint_interval`` steps and at the end (see
  :mod:`voxvec.train.checkpoint`); ``resume`` continues an interrupted run exactly: every random
  draw of the data pipeline is seeded by the sampler position, and the model's own randomness
  (dropout, SpecAugment) by the RNG states stored in the checkpoint.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from voxvec.audio.features import log_mel
from voxvec.audio.io import resample
from voxvec.audio.windows import pad_batch
from voxvec.data.augment import Augmenter
from voxvec.data.collate import CropCollate
from voxvec.data.dataset import UtteranceDataset, derive_seed, load_audio
from voxvec.data.manifest import ManifestItem, group_by_speaker, read_manifest
from voxvec.data.sampler import SpeakerBatchSampler
from voxvec.losses import AAMSoftmax, GE2ELoss
from voxvec.losses.ge2e import GE2EMethod
from voxvec.models.base import SpeakerEncoder
from voxvec.pretrained import load_model
from voxvec.registry import config_to_dict as model_config_to_dict
from voxvec.registry import create_model
from voxvec.train.checkpoint import (
    capture_rng_state,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from voxvec.train.config import TrainConfig, config_to_dict, config_to_yaml
from voxvec.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from voxvec.train.logging import RunLogger
from voxvec.train.schedule import LRSchedule, margin_at

logger = logging.getLogger(__name__)

# Salt separating the augmentation's random stream from the crop stream of the same batch.
_AUGMENT_STREAM = 0xA6


class SpeedSpeakerDataset(Dataset[dict[str, Any]]):
    """A dataset plus speed-perturbed copies of it, each speed counted as new speakers.

    Item ``j`` is item ``j % n`` of ``base`` played ``factors[j // n]`` times faster (pitch and
    tempo together, as ``sox speed``), where ``factors = (1.0, *speed_factors)``. Speaker ``s`` at
    speed ``f != 1`` becomes speaker ``"s@speed<f>"`` with its own label, which multiplies the
    classes a margin loss separates and the speakers GE2E batches draw from.

    Args:
        base: the original dataset (``labels``, ``speakers``, ``sample_rate``; items
            ``{"wav", "speaker", "index"}``).
        speed_factors: the extra speeds (> 0, != 1).

    Attributes:
        speakers: speaker ids, ``base.speakers`` first, then those of each extra speed.
        labels: per item, the index of its speaker in ``speakers``.
    """

    def __init__(self, base: UtteranceDataset, speed_factors: Sequence[float]) -> None:
        self.base = base
        self.factors = (1.0, *(float(f) for f in speed_factors))
        self.sample_rate = base.sample_rate
        n_spk = len(base.speakers)
        self.speakers = list(base.speakers) + [
            f"{s}@speed{f:g}" for f in self.factors[1:] for s in base.speakers
        ]
        self.labels = [label + k * n_spk for k in range(len(self.factors)) for label in base.labels]

    def __len__(self) -> int:
        return len(self.base) * len(self.factors)

    def _perturb(self, item: dict[str, Any], j: int) -> dict[str, Any]:
        factor = self.factors[j // len(self.base)]
        wav = item["wav"]
        if factor != 1.0:
            faster_sr = round(self.sample_rate * factor)
            wav = torch.from_numpy(resample(wav.numpy(), faster_sr, self.sample_rate))
        return {"wav": wav, "speaker": self.labels[j], "index": j}

    def __getitem__(self, j: int) -> dict[str, Any]:
        """Item ``j``: ``{"wav": (T,) float32, "speaker": label, "index": j}``."""
        return self._perturb(self.base[j % len(self.base)], j)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of items, read through ``base.__getitems__`` (batch-seeded windows)."""
        items = self.base.__getitems__([int(j) % len(self.base) for j in indices])
        return [self._perturb(item, int(j)) for item, j in zip(items, indices, strict=True)]


class TrainCollate:
    """Crop, pad and augment a batch; every random draw is seeded by the batch's item indices.

    Args:
        crop: the cropping collate.
        augmenter: the batch augmentation, or None.
        seed: base seed of the augmentation stream.
    """

    def __init__(self, crop: CropCollate, augmenter: Augmenter | None, seed: int) -> None:
        self.crop = crop
        self.augmenter = augmenter
        self.seed = seed

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        """``{"wav": (B, T), "lengths": (B,), "speaker": (B,), "index": (B,)}``."""
        batch = self.crop(items)
        if self.augmenter is not None:
            seed = derive_seed(self.seed, _AUGMENT_STREAM, *batch["index"].tolist())
            batch["wav"], batch["lengths"] = self.augmenter(
                batch["wav"],
                batch["lengths"],
                speaker=batch["speaker"],
                generator=torch.Generator().manual_seed(seed),
            )
        return batch


class SpeakerLoss(nn.Module):
    """The training objective: GE2E, AAM-softmax or their weighted sum.

    Args:
        kind: "ge2e", "aam" or "ge2e+aam".
        embed_dim: D of the embeddings.
        n_classes: training speakers (for AAM).
        config: the training config (weights and loss parameters).
    """

    def __init__(self, kind: str, embed_dim: int, n_classes: int, config: TrainConfig) -> None:
        super().__init__()
        self.ge2e = (
            GE2ELoss(
                config.ge2e_init_w, config.ge2e_init_b, method=cast(GE2EMethod, config.ge2e_method)
            )
            if "ge2e" in kind
            else None
        )
        self.aam = (
            AAMSoftmax(
                embed_dim,
                n_classes,
                margin=config.aam_margin,
                scale=config.aam_scale,
                n_subcentres=config.aam_subcentres,
            )
            if "aam" in kind
            else None
        )
        both = self.ge2e is not None and self.aam is not None
        self.ge2e_weight = config.ge2e_weight if both else 1.0
        self.aam_weight = config.aam_weight if both else 1.0

    def forward(
        self, embeddings: Tensor, labels: Tensor, n_speakers: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of a speaker-major batch.

        Args:
            embeddings: ``(N * M, D)``, M consecutive rows per speaker.
            labels: ``(N * M,)`` speaker labels.
            n_speakers: N.

        Returns:
            ``(loss, parts)``: the scalar loss and detached parts for logging
            (``ge2e``, ``aam``, ``aam_accuracy`` as present).
        """
        total = embeddings.new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        if self.ge2e is not None:
            ge2e = self.ge2e(embeddings.view(n_speakers, -1, embeddings.shape[-1]))  # (N, M, D)
            total = total + self.ge2e_weight * ge2e
            parts["ge2e"] = ge2e.detach()
        if self.aam is not None:
            aam, accuracy = self.aam(embeddings, labels)
            total = total + self.aam_weight * aam
            parts["aam"] = aam.detach()
            parts["aam_accuracy"] = accuracy.detach()
        return total, parts


def model_inputs(model: SpeakerEncoder, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """What ``model`` takes for a waveform batch: the waveform itself or its log-mels.

    Args:
        model: the encoder.
        wav: ``(B, T)`` float32 at ``model.sample_rate``.
        lengths: ``(B,)`` samples.

    Returns:
        ``(x, x_lengths)``: ``(B, T)`` and samples, or ``(B, F, n_mels)`` and frames.
    """
    mel = model.mel_config
    if model.input_kind == "logmel" and mel is not None:
        return log_mel(wav, mel, lengths)
    return wav, lengths


class TrainStep(nn.Module):
    """Model + loss as one module, so DDP synchronises the gradients of both.

    Args:
        model: the encoder.
        loss: the objective.
        autocast_dtype: fp16/bf16 for mixed precision, or None for fp32.
    """

    def __init__(
        self, model: SpeakerEncoder, loss: SpeakerLoss, autocast_dtype: torch.dtype | None
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.autocast_dtype = autocast_dtype

    def forward(
        self, wav: Tensor, lengths: Tensor, labels: Tensor, n_speakers: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of a waveform batch ``(B, T)`` with ``lengths`` and speaker ``labels`` (B,)."""
        x, x_lengths = model_inputs(self.model, wav, lengths)  # front-end in float32
        with torch.autocast(
            device_type=wav.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            embeddings = self.model(x, x_lengths)  # (N*M, D)
        return self.loss(embeddings.float(), labels, n_speakers)


def _param_groups(*modules: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices and kernels; none on biases, norms, scalars."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _select_validation(
    items: Sequence[ManifestItem], n_speakers: int, n_utterances: int, seed: int
) -> list[ManifestItem]:
    """A fixed seeded choice of up to ``n_speakers`` x ``n_utterances`` items, speaker-major."""
    groups = group_by_speaker(items)
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    chosen = sorted(rng.choice(len(names), size=min(n_speakers, len(names)), replace=False))
    out: list[ManifestItem] = []
    for k in chosen:
        files = groups[names[k]]
        picks = sorted(rng.choice(len(files), size=min(n_utterances, len(files)), replace=False))
        out.extend(files[i] for i in picks)
    return out


class Trainer:
    """One training run (see the module docstring); :meth:`fit` runs it.

    Args:
        config: the run's settings; ``train_csv`` and ``checkpoint_path`` are required.

    Raises:
        ValueError: missing required settings, settings that do not fit the model or data, a
            checkpoint that does not fit the config, fp16 without CUDA.
        FileNotFoundError: a manifest or checkpoint does not exist.
    """

    def __init__(self, config: TrainConfig) -> None:
        for name in ("train_csv", "checkpoint_path"):
            if not getattr(config, name):
                raise ValueError(f"{name} is required: set it in the config or as {name}=...")
        self.config = config
        self.dist: DistInfo = init_distributed(config.device)
        self.device = self.dist.device
        if not self.dist.is_main:
            logging.getLogger("voxvec").setLevel(logging.WARNING)
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.run_dir = Path(config.checkpoint_path)
        resume_from = self._resume_path()

        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, config.model_config)
        if config.init_from is not None and resume_from is None:
            self._init_from(config.init_from)
        # Training randomness (dropout, SpecAugment) differs between ranks.
        torch.manual_seed(config.seed + self.dist.rank)
        sample_rate = self.model.sample_rate
        min_samples = round(config.min_crop_s * sample_rate)
        max_samples = round(config.max_crop_s * sample_rate)
        if min_samples < self.model.min_samples:
            raise ValueError(
                f"min_crop_s={config.min_crop_s} is shorter than the {config.model} model's "
                f"minimum input ({self.model.min_samples} samples at {sample_rate} Hz)"
            )

        self.train_items = read_manifest(config.train_csv)
        base = UtteranceDataset(
            self.train_items,
            sample_rate,
            cache_dir=config.cache_dir,
            max_load_s=2 * config.max_crop_s,
            seed=config.seed,
        )
        self.dataset: UtteranceDataset | SpeedSpeakerDataset = (
            SpeedSpeakerDataset(base, config.speed_factors) if config.speed_speakers else base
        )
        self.sampler = SpeakerBatchSampler(
            self.dataset.labels,
            config.n_speakers,
            config.n_utterances,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        augmenter = Augmenter(config.augment, sample_rate) if config.augment.enabled else None
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            collate_fn=TrainCollate(
                CropCollate(min_samples, max_samples, config.seed), augmenter, config.seed
            ),
            num_workers=config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=config.num_workers > 0,
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.total_steps = config.max_steps or config.n_epochs * len(self.sampler)

        self.loss = SpeakerLoss(
            config.loss, self.model.embed_dim, len(self.dataset.speakers), config
        )
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.precision)
        self.step_module = TrainStep(self.model, self.loss, dtype).to(self.device)
        if config.compile:
            self.model.compile()
        self.ddp = wrap_ddp(self.step_module, self.dist)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, self.loss, weight_decay=config.weight_decay),
            lr=1.0,  # the schedule's factor is the learning rate
            betas=config.betas,
        )
        self.schedule = LRSchedule(
            config.schedule,
            config.start_lr,
            config.max_lr,
            config.end_lr,
            config.warmup_pct,
            self.total_steps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.step = 0
        self.epoch = 0
        self.batches_done = 0
        self._valid: tuple[list[Tensor], np.ndarray, list[str]] | None = None
        if resume_from is not None:
            self._load(resume_from)

    # -- setup helpers -------------------------------------------------------------------

    def _init_from(self, source: str) -> None:
        """Copy the weights of a pretrained model or bundle into the freshly built model."""
        pretrained, _ = load_model(source, progress=self.dist.is_main)
        if pretrained.arch != self.config.model:
            raise ValueError(
                f"init_from={source!r} holds a '{pretrained.arch}' model but model="
                f"{self.config.model!r}; set model (and model_config) to match it"
            )
        try:
            self.model.load_state_dict(pretrained.state_dict())
        except RuntimeError as err:
            raise ValueError(
                f"init_from={source!r}: its weights do not fit model_config "
                f"{self.config.model_config} (set model_config to the pretrained model's): {err}"
            ) from err
        logger.info("model initialised from %s", source)

    def _resume_path(self) -> Path | None:
        resume = self.config.resume
        existing = list_checkpoints(self.run_dir)
        if resume == "auto":
            return existing[-1] if existing else None
        if resume == "never":
            if existing:
                raise ValueError(
                    f"{self.run_dir} already holds checkpoints ({existing[-1].name}); use "
                    "resume=auto to continue that run, or another checkpoint_path"
                )
            return None
        path = Path(resume)
        if path.is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"resume={resume}: no checkpoint (ckpt_*.pt) in {path}")
            return found
        if not path.is_file():
            raise FileNotFoundError(
                f"resume={resume!r} is neither auto, never, nor an existing checkpoint"
            )
        return path

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state["arch"] != self.config.model:
            raise ValueError(
                f"checkpoint {path} holds a {state['arch']!r} model but the config trains "
                f"{self.config.model!r}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.loss.load_state_dict(state["loss"])
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path} does not fit this config: {err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler_state = dict(state["scheduler"])
        # The schedule itself comes from the config (so a run can be extended); only its
        # position is restored.
        scheduler_state.pop("lr_lambdas", None)
        self.scheduler.load_state_dict({**scheduler_state, "lr_lambdas": [None]})
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["sampler"]["batches_done"])
        self.sampler.load_state_dict(state["sampler"])
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
        else:
            logger.warning(
                "checkpoint was written by %d process(es), this run has %d: RNG states not "
                "restored, so the continuation is not bit-exact",
                len(rng),
                self.dist.world_size,
            )
        logger.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # -- training ------------------------------------------------------------------------

    def _set_margin(self) -> None:
        aam = self.loss.aam
        if aam is not None:
            aam.margin = margin_at(
                self.step, self.config.aam_margin, self.config.margin_warmup_pct, self.total_steps
            )

    def _train_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One optimiser step; returns detached metrics (tensors, on the device)."""
        wav = batch["wav"].to(self.device, non_blocking=True)
        lengths = batch["lengths"].to(self.device, non_blocking=True)
        labels = batch["speaker"].to(self.device, non_blocking=True)
        self._set_margin()
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.ddp(wav, lengths, labels, self.config.n_speakers)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        nn.utils.clip_grad_norm_(self.loss.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {
            "loss": loss.detach(),
            "grad_norm": grad_norm.detach(),
            "audio_s": lengths.sum() / self.model.sample_rate,
            **parts,
        }

    def fit(self) -> Path:
        """Train to ``total_steps`` (continuing from a resumed position).

        Returns:
            The final checkpoint (on every rank).

        Raises:
            RuntimeError: the loss became NaN or infinite.
        """
        cfg = self.config
        run_log: RunLogger | None = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg))
            run_log = RunLogger(self.run_dir / "logs", self.total_steps, self.step)
            n_params = sum(p.numel() for p in self.model.parameters())
            logger.info(
                "training %s (%.2f M parameters) on %s x %d process(es): %d files, %d speakers, "
                "%d batches of %d x %d per epoch, %d steps",
                cfg.model,
                n_params / 1e6,
                self.device,
                self.dist.world_size,
                len(self.dataset),
                len(self.dataset.speakers),
                len(self.sampler),
                cfg.n_speakers,
                cfg.n_utterances,
                self.total_steps,
            )
        self.step_module.train()
        pending: list[dict[str, Tensor]] = []
        tic = time.perf_counter()
        final: Path | None = None
        try:
            while self.step < self.total_steps:
                self.sampler.set_epoch(self.epoch)
                for batch in self.loader:
                    pending.append(self._train_step(batch))
                    self.step += 1
                    self.batches_done += 1
                    if run_log is not None:
                        run_log.advance()
                    if self.step % cfg.log_interval == 0 or self.step == self.total_steps:
                        self._log(run_log, pending, time.perf_counter() - tic)
                        pending, tic = [], time.perf_counter()
                    if cfg.valid_csv and self.step % cfg.validation_interval == 0:
                        self._validate(run_log)
                    if self.step >= self.total_steps:
                        broadcast_buffers(self.model, self.dist)
                        final = self._checkpoint()
                        break
                    if self.step % cfg.checkpoint_interval == 0:
                        self._checkpoint()
                else:
                    self.epoch += 1
                    self.batches_done = 0
        finally:
            if run_log is not None:
                run_log.close()
        if final is None:  # nothing left to do: the resumed checkpoint was already final
            final = self._checkpoint()
        barrier(self.dist)
        cleanup(self.dist)
        return final

    def _log(
        self, run_log: RunLogger | None, pending: list[dict[str, Tensor]], seconds: float
    ) -> None:
        """Average the steps since the last log; write tensorboard scalars and a console line."""
        if not pending:
            return
        means = {k: float(torch.stack([p[k].float() for p in pending]).mean()) for k in pending[0]}
        if not np.isfinite(means["loss"]):
            raise RuntimeError(
                f"the training loss is {means['loss']} at step {self.step}: training diverged; "
                "lower max_lr or grad_clip, or use precision=fp32"
            )
        audio_s = means.pop("audio_s") * len(pending) * self.dist.world_size
        if run_log is None:
            return
        lr = float(self.scheduler.get_last_lr()[0])
        values = {f"train/{k}": v for k, v in means.items() if k != "grad_norm"}
        values.update(
            {
                "opt/lr": lr,
                "opt/grad_norm": means["grad_norm"],
                "speed/audio_s_per_s": audio_s / max(seconds, 1e-9),
                "speed/steps_per_s": len(pending) / max(seconds, 1e-9),
                "train/epoch": float(self.epoch),
            }
        )
        if self.loss.ge2e is not None:
            values["ge2e/w"] = float(self.loss.ge2e.w.detach())
            values["ge2e/b"] = float(self.loss.ge2e.b.detach())
        if self.loss.aam is not None:
            values["aam/margin"] = self.loss.aam.margin
        if self.device.type == "cuda":
            values["memory/max_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        run_log.scalars(self.step, values)
        run_log.set_postfix(loss=means["loss"], lr=lr)
        if self.step % self.config.console_interval < len(pending) or self.step == self.total_steps:
            run_log.console(
                f"step {self.step}/{self.total_steps} epoch {self.epoch} loss {means['loss']:.4f} "
                f"lr {lr:.3g} grad-norm {means['grad_norm']:.3g} "
                f"{values['speed/audio_s_per_s']:.1f} audio-s/s"
            )

    # -- validation ----------------------------------------------------------------------

    def _validation_data(self) -> tuple[list[Tensor], np.ndarray, list[str]]:
        """The fixed validation waveforms (decoded once), their labels and speaker ids."""
        if self._valid is None:
            cfg = self.config
            assert cfg.valid_csv
            valid_items = read_manifest(cfg.valid_csv)
            shared = {i.speaker for i in valid_items} & {i.speaker for i in self.train_items}
            if shared:
                logger.warning(
                    "%d validation speaker(s) also in train_csv (e.g. %s): the validation EER "
                    "is optimistic; split by speaker (voxvec prepare --valid-speakers)",
                    len(shared),
                    sorted(shared)[0],
                )
            items = _select_validation(
                valid_items, cfg.valid_n_speakers, cfg.valid_n_utterances, cfg.seed
            )
            sample_rate = self.model.sample_rate
            max_samples = round(cfg.valid_max_s * sample_rate)
            waves: list[Tensor] = []
            names: list[str] = []
            for item in items:
                wav = load_audio(item.path, sample_rate, cfg.cache_dir)
                if wav.shape[0] < self.model.min_samples:
                    logger.warning(
                        "validation file %s is too short for the model; skipped", item.path
                    )
                    continue
                start = max(0, (wav.shape[0] - max_samples) // 2)
                waves.append(torch.from_numpy(np.array(wav[start : start + max_samples])))
                names.append(item.speaker)
            index = {name: i for i, name in enumerate(sorted(set(names)))}
            labels = np.array([index[n] for n in names], dtype=np.int64)
            self._valid = (waves, labels, names)
            logger.info(
                "validation set: %d files of %d speakers from %s",
                len(waves),
                len(index),
                cfg.valid_csv,
            )
        return self._valid

    @torch.no_grad()
    def embed_validation(self) -> tuple[Tensor, np.ndarray, list[str]]:
        """Embeddings ``(n_files, D)`` (CPU, float32) of the validation files, labels and ids."""
        waves, labels, names = self._validation_data()
        batch_size = self.config.n_speakers * self.config.n_utterances
        order = np.argsort([-w.shape[0] for w in waves], kind="stable")
        out = torch.empty(len(waves), self.model.embed_dim)
        dtype = self.step_module.autocast_dtype
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            wav, lengths = pad_batch([waves[i] for i in idx])
            x, x_lengths = model_inputs(self.model, wav.to(self.device), lengths.to(self.device))
            with torch.autocast(
                device_type=self.device.type,
                dtype=dtype or torch.float32,
                enabled=dtype is not None,
            ):
                out[torch.as_tensor(idx)] = self.model(x, x_lengths).float().cpu()
        return out, labels, names

    def _validate(self, run_log: RunLogger | None) -> None:
        """Validation loss and EER on rank 0 (see the module docstring); others wait."""
        if run_log is not None:
            from voxvec.eval.metrics import eer

            self.step_module.eval()
            try:
                emb, labels, names = self.embed_validation()
            finally:
                self.step_module.train()
            values: dict[str, float] = {}
            scores = (emb @ emb.T).numpy()
            upper = np.triu_indices(len(labels), k=1)
            targets = labels[upper[0]] == labels[upper[1]]
            if targets.any() and not targets.all():
                values["validation/eer"] = eer(scores[upper], targets)[0]
            if self.loss.ge2e is not None:
                full = self._full_speakers(labels)
                if len(full) >= 2:
                    m = self.config.valid_n_utterances
                    grouped = torch.cat([emb[labels == k] for k in full]).view(len(full), m, -1)
                    with torch.no_grad():
                        ge2e = self.loss.ge2e(grouped.to(self.device))
                    values["validation/ge2e_loss"] = float(ge2e)
            run_log.scalars(self.step, values)
            run_log.embeddings(self.step, emb, labels, names)
            summary = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in values.items())
            run_log.console(f"validation at step {self.step}: {summary or 'no trials'}")
        barrier(self.dist)

    def _full_speakers(self, labels: np.ndarray) -> list[int]:
        counts = np.bincount(labels)
        return [int(k) for k in np.flatnonzero(counts == self.config.valid_n_utterances)]

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint contents (see :mod:`voxvec.train.checkpoint`)."""
        return {
            "arch": self.config.model,
            "model_config": model_config_to_dict(self.model.config),
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(batches_done=self.batches_done),
            "step": self.step,
            "epoch": self.epoch,
            "rng": rng,
            "world_size": self.dist.world_size,
            "config": config_to_dict(self.config),
            "train_data": {
                "train_csv": str(self.config.train_csv),
                "n_files": len(self.train_items),
                "n_speakers": len({item.speaker for item in self.train_items}),
                "n_classes": len(self.dataset.speakers),
            },
        }

    def _checkpoint(self) -> Path:
        """Write a checkpoint on rank 0 (every rank's RNG state included); returns its path."""
        rng = all_gather_objects(capture_rng_state(), self.dist)
        path = self.run_dir / checkpoint_name(self.step)
        if self.dist.is_main:
            path = save_checkpoint(
                self.state_dict(rng), self.run_dir, self.step, self.config.keep_last_k
            )
            logger.info("saved checkpoint %s", path)
        barrier(self.dist)
        return path


def train(config: TrainConfig) -> Path:
    """Run (or resume) the training described by ``config``.

    Under ``torchrun`` every process calls this; rank 0 logs, validates and writes checkpoints.

    Args:
        config: the run's settings (see :class:`~voxvec.train.config.TrainConfig`).

    Returns:
        The final checkpoint, ``checkpoint_path/ckpt_<max_steps>.pt``.

    Raises:
        ValueError, FileNotFoundError: as :class:`Trainer`.
        RuntimeError: the loss diverged.
    """
    return Trainer(config).fit()
