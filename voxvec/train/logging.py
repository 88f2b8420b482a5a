"""Training logs: tensorboard scalars and images, console lines, a progress bar.

Only the main process (rank 0) creates a :class:`RunLogger`; the others log nothing.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger("voxvec.train")


@dataclass(frozen=True)
class LogConfig:
    """How often a run logs.

    Attributes:
        interval: steps between tensorboard scalars (loss, lr, grad norm, speed).
        console_interval: steps between console log lines.

    Raises:
        ValueError: an interval below 1.
    """

    interval: int = 25
    console_interval: int = 100

    def __post_init__(self) -> None:
        for name in ("interval", "console_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"log.{name} must be >= 1, got {getattr(self, name)}")


# Distinct, colour-blind-friendly point colours (Okabe-Ito, then Tableau), RGB 0-255.
_PALETTE = np.array(
    [
        (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
        (213, 94, 0), (204, 121, 167), (0, 0, 0), (31, 119, 180), (255, 127, 14),
        (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
        (127, 127, 127), (188, 189, 34), (23, 190, 207),
    ],
    dtype=np.uint8,
)  # fmt: skip


def projection_image(
    embeddings: Tensor | np.ndarray, labels: np.ndarray, size: int = 320, dot: int = 3
) -> np.ndarray:
    """A 2-D PCA scatter of ``embeddings`` coloured by label, drawn with numpy alone.

    Args:
        embeddings: ``(N, D)`` vectors.
        labels: ``(N,)`` integer labels (speakers); colours repeat after 18 labels.
        size: image width and height in pixels.
        dot: half-width in pixels of each point's square.

    Returns:
        ``(3, size, size)`` uint8 RGB image on a white background (tensorboard's CHW layout).
    """
    x = torch.as_tensor(embeddings, dtype=torch.float32).cpu()
    image = np.full((3, size, size), 255, dtype=np.uint8)
    if x.shape[0] < 2:
        return image
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()  # (N, 2)
    if xy.shape[1] < 2:
        xy = np.concatenate([xy, np.zeros_like(xy)], axis=1)
    lo, hi = xy.min(0), xy.max(0)
    margin = dot + 2
    pix = margin + (xy - lo) / np.maximum(hi - lo, 1e-12) * (size - 1 - 2 * margin)
    pix = np.round(pix).astype(int)
    colours = _PALETTE[np.asarray(labels, dtype=np.int64) % len(_PALETTE)]
    for (col, row), colour in zip(pix, colours, strict=True):
        image[:, size - 1 - row - dot : size - row + dot, col - dot : col + dot + 1] = colour[
            :, None, None
        ]
    return image


class RunLogger:
    """Tensorboard + console + progress bar for one training run (main process only).

    Args:
        log_dir: tensorboard event folder.
        total_steps: length of the run, for the progress bar.
        initial_step: where the run starts (non-zero when resuming).
        progress: show a tqdm bar; None = only when stderr is a terminal.

    Raises:
        ImportError: tensorboard is not installed (extra ``train``).
    """

    def __init__(
        self,
        log_dir: str | Path,
        total_steps: int,
        initial_step: int = 0,
        progress: bool | None = None,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "training logs need tensorboard: pip install 'voxvec[train]'"
            ) from err
        self.writer = SummaryWriter(str(log_dir))
        show = sys.stderr.isatty() if progress is None else progress
        self.bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True
            )

    def advance(self) -> None:
        """Move the progress bar on by one optimiser step."""
        if self.bar is not None:
            self.bar.update(1)

    def set_postfix(self, **values: float) -> None:
        """Show ``values`` (e.g. the latest mean loss) beside the progress bar."""
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write ``values`` (tag -> number) to tensorboard at ``step``."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def console(self, message: str) -> None:
        """One log line, written above the progress bar when there is one."""
        if self.bar is not None:
            self.bar.write(message)
        else:
            logger.info(message)

    def embeddings(
        self, step: int, embeddings: Tensor, labels: np.ndarray, names: list[str]
    ) -> None:
        """A PCA scatter image and the tensorboard projector entry for validation embeddings."""
        self.writer.add_image("validation/projection", projection_image(embeddings, labels), step)
        self.writer.add_embedding(embeddings.float().cpu(), metadata=names, global_step=step)

    def close(self) -> None:
        """Flush tensorboard and close the progress bar."""
        self.writer.flush()
        self.writer.close()
        if self.bar is not None:
            self.bar.close()
