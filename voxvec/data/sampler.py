"""Batch sampler of N speakers x M utterances: seeded per epoch, DDP-aware and resumable.

:class:`SpeakerBatchSampler` yields lists of ``N * M`` dataset indices, speaker-major: ``M``
consecutive indices of one speaker, then ``M`` of the next, so the embeddings of a batch reshape
to GE2E's ``(N, M, D)`` with ``emb.view(N, M, D)``. A batch never holds a speaker twice. With
``n_utterances=1`` it gives N distinct speakers per batch, a fine sampler for AAM-softmax
training too (the labels come with the batch from the dataset).

An epoch is one or more passes over the speakers. Each pass shuffles them, cuts the order into
groups of N (leftover speakers, fewer than N, wait for the next pass) and, for each speaker of a
group, draws M of its files without replacement; a speaker with fewer than M files repeats them
(as evenly as possible; the collate takes a different random crop of each copy). Everything is
drawn from a generator seeded by ``(seed, epoch)``, so an epoch's batches do not depend on
anything else.

Distributed data parallel: the epoch's batches are dealt round-robin to the ``world_size`` ranks
(batch ``r``, ``r + world_size``, ... to rank ``r``), every rank getting the same number, so the
ranks' shards are disjoint and stay in step.

Resuming: :meth:`state_dict` records ``epoch`` and ``batches_done`` (batches of this epoch
already trained on); after :meth:`load_state_dict`, the next iteration skips them and continues
exactly where the interrupted run stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class SpeakerBatchSampler(Sampler[list[int]]):
    """Batches of ``n_speakers`` speakers x ``n_utterances`` utterances (see the module docstring).

    Use it as a DataLoader's ``batch_sampler`` and call :meth:`set_epoch` before each epoch::

        sampler = SpeakerBatchSampler(dataset.labels, 16, 4, seed=0, rank=rank, world_size=world)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=CropCollate(...))
        for epoch in range(start_epoch, n_epochs):
            sampler.set_epoch(epoch)
            for batch in loader: ...

    Args:
        labels: speaker label (any int) of every dataset item.
        n_speakers: N, speakers per batch (>= 1).
        n_utterances: M, utterances per speaker (>= 1).
        seed: base seed (>= 0); epoch ``e`` uses a generator seeded by ``(seed, e)``.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of data-parallel processes.
        batches_per_epoch: batches each rank yields per epoch (``len(self)``); None means one
            pass over the speakers: ``(n_speaker_ids // N) // world_size``. More batches than one
            pass holds take further passes, each freshly shuffled.

    Raises:
        ValueError: bad sizes or rank, fewer speakers than ``n_speakers``, or too few speakers for
            one batch per rank.
    """

    def __init__(
        self,
        labels: Sequence[int],
        n_speakers: int,
        n_utterances: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batches_per_epoch: int | None = None,
    ) -> None:
        if n_speakers < 1 or n_utterances < 1:
            raise ValueError(
                f"n_speakers and n_utterances must be >= 1, got {n_speakers} and {n_utterances}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1 or None, got {batches_per_epoch}")
        groups: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            groups.setdefault(int(label), []).append(index)
        self._files = [np.asarray(groups[label], dtype=np.int64) for label in sorted(groups)]
        n_ids = len(self._files)
        if n_ids < n_speakers:
            raise ValueError(
                f"{n_ids} speaker(s) in the data but n_speakers={n_speakers} per batch; "
                f"lower n_speakers to at most {n_ids}"
            )
        self.n_speakers = n_speakers
        self.n_utterances = n_utterances
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._batches_per_pass = n_ids // n_speakers
        if batches_per_epoch is None:
            batches_per_epoch = self._batches_per_pass // world_size
            if batches_per_epoch == 0:
                raise ValueError(
                    f"one pass over {n_ids} speakers gives {self._batches_per_pass} batch(es) of "
                    f"{n_speakers} speakers, fewer than world_size={world_size}; lower n_speakers "
                    f"or set batches_per_epoch"
                )
        self.batches_per_epoch = batches_per_epoch
        short = sum(1 for files in self._files if len(files) < n_utterances)
        if short:
            logger.info(
                "%d of %d speakers have fewer than %d files; their files repeat within a batch",
                short,
                n_ids,
                n_utterances,
            )
        self.epoch = 0
        self._skip = 0
        self._batches_done = 0

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch (a resumed epoch yields the remainder)."""
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields.

        Setting the epoch a loaded state is in keeps its resume position; any other epoch
        starts at its first batch.

        Raises:
            ValueError: ``epoch < 0``.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = epoch
            self._skip = 0
            self._batches_done = 0

    def _draw(self, rng: np.random.Generator, speaker: int) -> list[int]:
        files = self._files[speaker]
        m = self.n_utterances
        if len(files) >= m:
            return files[rng.choice(len(files), size=m, replace=False)].tolist()
        # Each file once per round, rounds shuffled: as even as possible.
        n_rounds = -(-m // len(files))
        order = np.concatenate([rng.permutation(len(files)) for _ in range(n_rounds)])[:m]
        return files[order].tolist()

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` for this rank, in order (ignoring any resume position).

        Returns:
            ``len(self)`` lists of ``N * M`` dataset indices, speaker-major.
        """
        rng = np.random.default_rng([self.seed, epoch])
        n_global = self.batches_per_epoch * self.world_size
        batches: list[list[int]] = []
        while len(batches) < n_global:
            order = rng.permutation(len(self._files))
            for b in range(min(self._batches_per_pass, n_global - len(batches))):
                group = order[b * self.n_speakers : (b + 1) * self.n_speakers]
                batches.append([i for speaker in group for i in self._draw(rng, int(speaker))])
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        skip, self._skip = self._skip, 0
        self._batches_done = skip
        for k in range(skip, len(batches)):
            self._batches_done = k + 1
            yield batches[k]

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """The position to resume from.

        Args:
            batches_done: batches of the current epoch actually trained on. None uses the
                number this sampler has yielded, which is exact when the sampler is iterated
                directly or by a DataLoader with ``num_workers=0``; a DataLoader with workers
                fetches ``prefetch_factor * num_workers`` batches ahead, so pass the trainer's own
                count of steps done in this epoch then.

        Returns:
            ``{"epoch": int, "batches_done": int}``.
        """
        done = self._batches_done if batches_done is None else int(batches_done)
        return {"epoch": self.epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields epoch ``state["epoch"]`` from batch
        ``state["batches_done"]`` on.

        Raises:
            ValueError: a missing key or a negative or too large value.
        """
        try:
            epoch, done = int(state["epoch"]), int(state["batches_done"])
        except KeyError as e:
            raise ValueError(
                f"sampler state lacks key {e}; expected 'epoch' and 'batches_done'"
            ) from e
        if epoch < 0 or not 0 <= done <= self.batches_per_epoch:
            raise ValueError(
                f"invalid sampler state epoch={epoch}, batches_done={done} "
                f"(this sampler has {self.batches_per_epoch} batches per epoch)"
            )
        self.epoch = epoch
        self._skip = done
        self._batches_done = done
