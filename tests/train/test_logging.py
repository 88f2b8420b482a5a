"""Tests of voxvec.train.logging: the PCA projection image and the run logger."""

from __future__ import annotations

import numpy as np
import torch

from voxvec.train.logging import _PALETTE, RunLogger, projection_image


def test_projection_image_draws_each_speaker_in_its_colour_where_it_lies():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0, 0], [-5.0, 0, 0, 0], [0, 0, 5.0, 0]])
    emb = (centres[:, None] + 0.1 * torch.randn(3, 10, 4, generator=gen)).reshape(30, 4)
    labels = np.repeat([0, 1, 2], 10)
    image = projection_image(emb, labels, size=200)
    assert image.shape == (3, 200, 200) and image.dtype == np.uint8
    pixels = image.reshape(3, -1).T
    for k in range(3):
        assert (pixels == _PALETTE[k]).all(1).sum() >= 9, f"speaker {k} not drawn"
    # Speakers 0 and 1 are opposite along the main axis: their dots are far apart.
    cols = [np.nonzero((image.transpose(1, 2, 0) == _PALETTE[k]).all(-1))[1].mean() for k in (0, 1)]
    assert abs(cols[0] - cols[1]) > 100


def test_projection_image_of_too_few_points_is_blank():
    image = projection_image(torch.ones(1, 4), np.array([0]))
    assert (image == 255).all()


def test_run_logger_writes_scalars_and_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLogger(tmp_path, total_steps=3, progress=False)
    log.advance()
    log.scalars(1, {"train/loss": 2.5})
    log.embeddings(1, torch.randn(6, 4), np.array([0, 0, 1, 1, 2, 2]), list("aabbcc"))
    log.console("hello")
    log.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/loss")] == [2.5]
    assert "validation/projection" in acc.Tags()["images"]
