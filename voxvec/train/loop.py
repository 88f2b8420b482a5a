"""The training loop behind ``voxvec train``: one process, or many under ``torchrun``.

:func:`train` runs a :class:`Trainer` built from a :class:`~voxvec.train.config.TrainConfig`.
The parts live where they belong; this module puts them together and runs the steps:

- the model: the registered architecture, its config checked before any data is read, optionally
  initialised from pretrained weights (``model.init_from``);
- the data (:mod:`voxvec.data.loader`): N speakers x M utterances per batch, each rank its own
  shard, cropped and augmented in DataLoader workers;
- the loss (:mod:`voxvec.losses.combined`) and the step (:mod:`voxvec.train.step`): GE2E,
  AAM-softmax or both, model and loss wrapped together in DistributedDataParallel when
  distributed, AdamW with the one-cycle or cosine schedule, gradient clipping, mixed precision;
- logs (rank 0, :mod:`voxvec.train.logging`): tensorboard scalars every ``log.interval`` steps,
  a console line every ``log.console_interval``, a progress bar on terminals;
- distillation (:mod:`voxvec.train.distill`): a teacher's embeddings of the same crops, from a
  cache computed once before the first step or on the fly, added to the objective;
- validation (rank 0, :mod:`voxvec.train.validation`) every ``validation.interval`` steps, and
  at step 0 when fine-tuning (``model.init_from``), so a run that makes things worse shows it;
- unreadable training files: each is replaced by another file of its speaker, logged and listed
  in ``checkpoint.path/unreadable.csv``; more than ``data.max_unreadable_files`` stop the run;
- checkpoints (:mod:`voxvec.train.checkpoint`) every ``checkpoint.interval`` steps and at the
  end; ``checkpoint.resume`` continues an interrupted run exactly: every random draw of the data
  pipeline is seeded by the sampler position, and the model's own randomness (dropout,
  SpecAugment) by the RNG states stored in the checkpoint.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from voxvec.atomic import atomic_open
from voxvec.data.crops import CropBank
from voxvec.data.loader import training_data
from voxvec.data.manifest import CsvWriter
from voxvec.losses.combined import SpeakerLoss
from voxvec.losses.distill import DistillLoss
from voxvec.models import create_model
from voxvec.models.base import SpeakerEncoder
from voxvec.train.checkpoint import (
    Progress,
    RunState,
    capture_rng_state,
    checkpoint_name,
    load_resume,
    remove_leftovers,
    save_checkpoint,
)
from voxvec.train.config import ModelSection, TrainConfig, config_to_dict, config_to_yaml
from voxvec.train.distill import (
    fit_initial_projection,
    load_teacher_embeddings,
    teacher_embeddings,
    teacher_input,
    utterance_bank,
)
from voxvec.train.distributed import (
    all_gather_objects,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from voxvec.train.logging import RunLogger
from voxvec.train.schedule import margin_at
from voxvec.train.step import TrainStep, build_optimizer, resolve_precision
from voxvec.train.validation import Validator
from voxvec.weights import load_model

logger = logging.getLogger(__name__)

UNREADABLE_REPORT = "unreadable.csv"
"""The run directory's list of unreadable training files (``path,reason``)."""


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_from(model: SpeakerEncoder, section: ModelSection, progress: bool = True) -> None:
    """Copy the weights of ``section.init_from`` (a pretrained name or bundle) into ``model``.

    Args:
        model: the freshly built model of ``section``.
        section: the model section, ``init_from`` set.
        progress: show a download progress bar.

    Raises:
        ValueError: the weights are of another architecture or do not fit ``section.config``.
    """
    source = section.init_from
    assert source is not None
    pretrained, _ = load_model(source, progress=progress)
    if pretrained.arch != section.arch:
        raise ValueError(
            f"init_from={source!r} holds a '{pretrained.arch}' model but model.arch="
            f"{section.arch!r}; set model.arch (and model.config) to match it"
        )
    try:
        model.load_state_dict(pretrained.state_dict())
    except RuntimeError as err:
        raise ValueError(
            f"init_from={source!r}: its weights do not fit model.config {section.config} (set "
            f"model.config to the pretrained model's): {err}"
        ) from err
    logger.info("model initialised from %s", source)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def warn_changed_settings(
    saved: Mapping[str, Any], current: Mapping[str, Any], source: str | Path
) -> list[str]:
    """Log a warning naming every setting a resumed run changes from its checkpoint's.

    (``checkpoint.resume`` itself is not counted.) A resumed run continues with the new
    settings, which is what a deliberate change (a longer run, a lower learning rate) wants and
    what an accidental one (another recipe, a forgotten override) must not do silently.

    Returns:
        The changed settings as ``"key: saved -> current"``.
    """
    old, new = _flatten(saved), _flatten(current)
    changed = [
        f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
        for key in sorted(set(old) | set(new))
        if key != "checkpoint.resume" and old.get(key) != new.get(key)
    ]
    if changed:
        logger.warning(
            "resuming from %s with %d setting(s) changed from its run (the new values apply): %s",
            source,
            len(changed),
            "; ".join(changed),
        )
    return changed


class Trainer:
    """One training run (see the module docstring); :meth:`fit` runs it.

    Args:
        config: the run's settings; ``data.train_csv`` and ``checkpoint.path`` are required.

    Raises:
        ValueError: missing required settings, settings that do not fit the model or data, a
            checkpoint that does not fit the config, float16 without CUDA.
        FileNotFoundError: a manifest or checkpoint does not exist.
    """

    def __init__(self, config: TrainConfig) -> None:
        config.check_required()
        self.config = config
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        if not self.dist.is_main:
            logging.getLogger("voxvec").setLevel(logging.WARNING)
        precision = resolve_precision(config.precision, self.device)
        self.run_dir = Path(config.checkpoint.path)
        if self.dist.is_main:
            remove_leftovers(self.run_dir)
        resume_from = load_resume(config.checkpoint.resume, self.run_dir)

        _seed_everything(config.seed)
        self.model = create_model(config.model.arch, config.model.arch_config())
        if config.model.init_from is not None and resume_from is None:
            init_from(self.model, config.model, progress=self.dist.is_main)
        torch.manual_seed(config.seed + self.dist.rank)  # dropout, SpecAugment differ by rank
        distill = config.distill
        self.teacher: SpeakerEncoder | None = None
        self.teacher_targets: Tensor | None = None  # per crop-bank entry, once computed
        if distill.teacher is not None:
            self.teacher, _ = load_model(distill.teacher, progress=self.dist.is_main)
            self.teacher.requires_grad_(False).to(self.device)
        self.data = training_data(
            config.data,
            self.model.sample_rate,
            self.model.min_samples,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            pin_memory=self.device.type == "cuda",
            crop_bank=distill.crop_bank,
        )
        optim = config.optim
        self.total_steps = optim.max_steps or optim.n_epochs * len(self.data.sampler)
        self.loss = SpeakerLoss(
            config.loss,
            self.model.embed_dim,
            len(self.data.dataset.speakers),
            None
            if self.teacher is None
            else DistillLoss(
                self.model.embed_dim,
                self.teacher.embed_dim,
                distill.cosine_weight,
                distill.similarity_weight,
            ),
        )
        self.step_module = TrainStep(self.model, self.loss, precision).to(self.device)
        if config.compile:
            self.model.compile()
        self.ddp = wrap_ddp(self.step_module, self.dist)
        optimizer, scheduler = build_optimizer(optim, self.total_steps, self.model, self.loss)
        self.state = RunState(
            config.model.arch,
            self.model,
            self.loss,
            optimizer,
            scheduler,
            torch.amp.GradScaler(self.device.type, enabled=precision == "float16"),
            self.data.sampler,
            Progress(),
        )
        # path: why; a resumed run starts from the files its earlier part found unreadable
        self.unreadable: dict[str, str] = {}
        if resume_from is not None and (self.run_dir / UNREADABLE_REPORT).is_file():
            with open(self.run_dir / UNREADABLE_REPORT, newline="", encoding="utf-8") as f:
                self.unreadable = {row["path"]: row["reason"] for row in csv.DictReader(f)}
        speakers = {item.speaker for item in self.data.items}
        self.validator = (
            Validator(config.validation, config.seed, config.data.cache_dir, speakers)
            if config.validation.csv
            else None
        )
        if resume_from is not None:
            source, state = resume_from
            warn_changed_settings(state.get("config", {}), config_to_dict(config), source)
            self.state.load_state_dict(state, source, self.dist.rank)

    @property
    def progress(self) -> Progress:
        """Steps, epoch and batches done so far."""
        return self.state.progress

    # -- training ------------------------------------------------------------------------

    def _note_unreadable(self, found: list[tuple[int, str, str]]) -> None:
        """Record the unreadable files a batch reports (rank 0 lists them in unreadable.csv).

        Raises:
            RuntimeError: more than ``data.max_unreadable_files`` files are unreadable.
        """
        new = {path: reason for _, path, reason in found if path not in self.unreadable}
        if not new:
            return
        self.unreadable.update(new)
        limit = self.config.data.max_unreadable_files
        report = self.run_dir / UNREADABLE_REPORT
        if self.dist.is_main:
            with atomic_open(report) as f:
                writer = CsvWriter(f)
                writer.writerow(["path", "reason"])
                writer.writerows(sorted(self.unreadable.items()))
        if len(self.unreadable) > limit:
            raise RuntimeError(
                f"{len(self.unreadable)} training files are unreadable (listed in {report}), "
                f"more than data.max_unreadable_files={limit}: fix or remove them from "
                f"{self.config.data.train_csv}, or raise the limit"
            )
        logger.warning(
            "%d unreadable training file(s) so far (limit data.max_unreadable_files=%d), each "
            "replaced by another file of its speaker; listed in %s",
            len(self.unreadable),
            limit,
            report,
        )

    def _prepare_teacher(self) -> None:
        """With a cached teacher: embed the crop bank, or with ``distill.target=utterance`` every
        training item whole (the shards not done yet; every rank its share), then load every
        rank's targets; the teacher is freed. A new run then fits the
        projection of the cosine term (``distill.fit_crops``)."""
        if self.teacher is None or not self.config.distill.cache:
            return
        bank = self.data.dataset
        if self.config.distill.target == "utterance":
            bank = utterance_bank(
                self.config.data, self.data.items, self.model.sample_rate, self.config.seed
            )
        assert isinstance(bank, CropBank)  # else training_data built one (distill.crop_bank)
        folder = self.config.distill.folder(self.run_dir)
        tic = time.perf_counter()
        shard_dir = teacher_embeddings(
            bank,
            self.teacher,
            folder,
            batch_size=self.config.distill.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        barrier(self.dist)
        self.teacher_targets = load_teacher_embeddings(shard_dir, len(bank), self.teacher.embed_dim)
        logger.info(
            "teacher embeddings of %d crops ready in %.0f s (%s)",
            len(bank),
            time.perf_counter() - tic,
            shard_dir,
        )
        self.teacher = None
        distill, fit_crops = self.loss.distill, self.config.distill.fit_crops
        if self.progress.step == 0 and distill is not None and fit_crops > 0:
            cosine = fit_initial_projection(
                distill,
                self.model,
                bank,
                self.teacher_targets,
                fit_crops,
                self.config.seed,
            )
            logger.info(
                "distillation projection fitted on %d crops: cosine to the teacher %.3f",
                min(fit_crops, len(bank)),
                cosine,
            )

    def _teacher(self, batch: dict[str, Tensor], wav: Tensor, lengths: Tensor) -> Tensor | None:
        """The teacher's embeddings of the batch: from the cache, or computed on ``wav``."""
        if self.teacher_targets is not None:
            return self.teacher_targets[batch["index"]].to(self.device, non_blocking=True)
        if self.teacher is None:
            return None
        teacher_wav, teacher_lengths = teacher_input(
            wav, lengths, self.model.sample_rate, self.teacher
        )
        with torch.inference_mode():
            return self.teacher(teacher_wav, teacher_lengths).float().clone()

    def _train_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One optimiser step; returns detached metrics (tensors, on the device)."""
        wav = batch["wav"].to(self.device, non_blocking=True)
        lengths = batch["lengths"].to(self.device, non_blocking=True)
        labels = batch["speaker"].to(self.device, non_blocking=True)
        teacher = self._teacher(batch, wav, lengths)
        state, cfg = self.state, self.config
        if self.loss.aam is not None:
            aam = cfg.loss.aam
            self.loss.aam.margin = margin_at(
                self.progress.step, aam.margin, aam.margin_warmup_pct, self.total_steps
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.ddp(wav, lengths, labels, cfg.data.n_speakers, teacher)
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        nn.utils.clip_grad_norm_(self.loss.parameters(), cfg.optim.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        return {
            "loss": loss.detach(),
            "grad_norm": grad_norm.detach(),
            "audio_s": lengths.sum() / self.model.sample_rate,
            **parts,
        }

    def _start_logging(self) -> RunLogger | None:
        """On rank 0: the run directory, its resolved config.yaml, the logger and a summary."""
        if not self.dist.is_main:
            return None
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg))
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(
            "training %s (%.2f M parameters) on %s x %d process(es) in %s: %d files (%d training "
            "items), %d speakers, %d batches of %d x %d per epoch, %d steps",
            cfg.model.arch,
            n_params / 1e6,
            self.device,
            self.dist.world_size,
            self.step_module.precision,
            len(self.data.items),
            len(self.data.dataset),
            len(self.data.dataset.speakers),
            len(self.data.sampler),
            cfg.data.n_speakers,
            cfg.data.n_utterances,
            self.total_steps,
        )
        return RunLogger(self.run_dir / "logs", self.total_steps, self.progress.step)

    def fit(self) -> Path:
        """Train to ``total_steps`` (continuing from a resumed position).

        Returns:
            The final checkpoint (on every rank).

        Raises:
            RuntimeError: the loss became NaN or infinite, or more than
                ``data.max_unreadable_files`` training files are unreadable.
        """
        cfg, progress = self.config, self.progress
        run_log = self._start_logging()
        self._prepare_teacher()
        if self.validator is not None and progress.step == 0 and cfg.model.init_from:
            self._validate(run_log)  # the starting point of a fine-tune
        self.step_module.train()
        pending: list[dict[str, Tensor]] = []
        tic = time.perf_counter()
        final: Path | None = None
        try:
            while progress.step < self.total_steps:
                self.data.sampler.set_epoch(progress.epoch)
                for batch in self.data.loader:
                    self._note_unreadable(batch.pop("unreadable"))
                    pending.append(self._train_step(batch))
                    progress.step += 1
                    progress.batches_done += 1
                    if run_log is not None:
                        run_log.advance()
                    step = progress.step
                    if step % cfg.log.interval == 0 or step == self.total_steps:
                        self._log(run_log, pending, time.perf_counter() - tic)
                        pending, tic = [], time.perf_counter()
                    if self.validator is not None and step % cfg.validation.interval == 0:
                        self._validate(run_log)
                    if step >= self.total_steps:
                        broadcast_buffers(self.model, self.dist)
                        final = self._checkpoint()
                        break
                    if step % cfg.checkpoint.interval == 0:
                        self._checkpoint()
                else:
                    progress.epoch += 1
                    progress.batches_done = 0
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
        step = self.progress.step
        means = {k: float(torch.stack([p[k].float() for p in pending]).mean()) for k in pending[0]}
        if not np.isfinite(means["loss"]):
            raise RuntimeError(
                f"the training loss is {means['loss']} at step {step}: training diverged; "
                "lower optim.max_lr or optim.grad_clip, or use precision=float32"
            )
        audio_s = means.pop("audio_s") * len(pending) * self.dist.world_size
        if run_log is None:
            return
        lr = float(self.state.scheduler.get_last_lr()[0])
        values = {f"train/{k}": v for k, v in means.items() if k != "grad_norm"}
        values.update(
            {
                "opt/lr": lr,
                "opt/grad_norm": means["grad_norm"],
                "speed/audio_s_per_s": audio_s / max(seconds, 1e-9),
                "speed/steps_per_s": len(pending) / max(seconds, 1e-9),
                "train/epoch": float(self.progress.epoch),
            }
        )
        if self.loss.ge2e is not None:
            values["ge2e/w"] = float(self.loss.ge2e.w.detach())
            values["ge2e/b"] = float(self.loss.ge2e.b.detach())
        if self.loss.aam is not None:
            values["aam/margin"] = self.loss.aam.margin
        if self.device.type == "cuda":
            values["memory/max_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        run_log.scalars(step, values)
        run_log.set_postfix(loss=means["loss"], lr=lr)
        if step % self.config.log.console_interval < len(pending) or step == self.total_steps:
            run_log.console(
                f"step {step}/{self.total_steps} epoch {self.progress.epoch} "
                f"loss {means['loss']:.4f} lr {lr:.3g} grad-norm {means['grad_norm']:.3g} "
                f"{values['speed/audio_s_per_s']:.1f} audio-s/s"
            )

    def _validate(self, run_log: RunLogger | None) -> None:
        """Validation on rank 0 (see :mod:`voxvec.train.validation`); the others wait."""
        if run_log is not None and self.validator is not None:
            batch_size = self.config.data.n_speakers * self.config.data.n_utterances
            result = self.validator.run(self.step_module, batch_size)
            step = self.progress.step
            run_log.scalars(step, result.values)
            run_log.embeddings(step, result.embeddings, result.labels, result.names)
            summary = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in result.values.items())
            run_log.console(f"validation at step {step}: {summary or 'no trials'}")
        barrier(self.dist)

    def _checkpoint(self) -> Path:
        """Write a checkpoint on rank 0 (every rank's RNG state included); returns its path."""
        rng = all_gather_objects(capture_rng_state(), self.dist)
        step = self.progress.step
        path = self.run_dir / checkpoint_name(step)
        if self.dist.is_main:
            train_data = {"train_csv": str(self.config.data.train_csv), **self.data.summary()}
            state = self.state.state_dict(rng, config_to_dict(self.config), train_data)
            path = save_checkpoint(state, self.run_dir, step, self.config.checkpoint.keep_last_k)
            logger.info("saved checkpoint %s", path)
        barrier(self.dist)
        return path


def train(config: TrainConfig) -> Path:
    """Run (or resume) the training described by ``config``.

    Under ``torchrun`` every process calls this; rank 0 logs, validates and writes checkpoints.

    Args:
        config: the run's settings (see :class:`~voxvec.train.config.TrainConfig`).

    Returns:
        The final checkpoint, ``checkpoint.path/ckpt_<steps>.pt``.

    Raises:
        ValueError, FileNotFoundError: as :class:`Trainer`.
        RuntimeError: the loss diverged.
    """
    return Trainer(config).fit()
