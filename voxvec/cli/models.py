"""List the model architectures and the pretrained models.

Architectures are what voxvec.models.create_model builds (untrained, e.g. to train);
pretrained models are what --model and voxvec.load accept by name (voxvec-default is an alias of
the current default's versioned name, listed as "= <name>"). For each: sample rate, the
front-end the model runs on the waveform (logmel, or waveform for models that take raw samples),
parameter count and float32 size, and for pretrained models
whether the weights are on this machine (bundled, or already downloaded into the torch hub
cache) or will be downloaded on first use.

examples:
  voxvec models
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxvec.weights import PretrainedSpec

HELP = "list model architectures and pretrained models (rate, front-end, size, availability)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``voxvec models`` takes no options beyond --help."""


def _size(n_params: int) -> tuple[str, str]:
    """Parameter count in millions and float32 size in MiB."""
    return f"{n_params / 1e6:.1f}M", f"{n_params * 4 / 2**20:.1f} MB"


def _weights_status(spec: PretrainedSpec) -> str:
    """Where a pretrained model's weights are: bundled, cached (usable offline) or to download."""
    present = spec.local_path.is_file()
    if spec.asset is not None:
        return "bundled" if present else "missing"
    return "cached" if present else "download"


def table() -> list[list[str]]:
    """Rows (with a header row) describing every architecture and pretrained model."""
    from voxvec.models import create_model, list_models
    from voxvec.weights import ALIASES, get_spec, list_pretrained

    rows = [["name", "type", "arch", "rate", "frontend", "params", "size", "weights"]]
    for name in list_models():
        model = create_model(name)
        n_params = sum(p.numel() for p in model.parameters())
        params, size = _size(n_params)
        rate, kind = str(model.sample_rate), model.frontend.kind
        rows.append([name, "architecture", name, rate, kind, params, size, "untrained"])
    named = [(alias, f"= {target}", get_spec(alias)) for alias, target in ALIASES.items()]
    named += [(spec.name, "pretrained", spec) for spec in list_pretrained()]
    for name, kind, spec in named:
        params, size = _size(spec.n_params)
        rows.append(
            [
                name,
                kind,
                spec.arch,
                str(spec.sample_rate),
                spec.frontend,
                params,
                size,
                _weights_status(spec),
            ]
        )
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    rows = table()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
