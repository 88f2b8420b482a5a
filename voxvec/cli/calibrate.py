"""Calibrate a model's scores on your own labelled data.

Embeds every file of a path,speaker manifest once, scores seeded verification trials of it and
fits a logistic map from cosine score to log-likelihood ratio, with the thresholds of the
equal-error point (eer) and of each --far false-accept rate (far1 for 1%, far0.1 for 0.1%), and
the false-accept curve that `voxvec identify` reads its open-set threshold from. The file is
tied to the model: verify, identify and voxvec.apps refuse it with another model. Use speakers
that you will not test on.

examples:
  voxvec calibrate --manifest labelled.csv --out calibration.json
  voxvec calibrate --manifest valid.csv --out cal.json --n-trials 40000 --far 0.01 --far 0.001
"""

from __future__ import annotations

import argparse
import sys

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "fit score -> log-likelihood-ratio calibration and thresholds on a labelled manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec calibrate``."""
    add_model_arguments(parser)
    parser.add_argument(
        "--manifest", required=True, metavar="CSV", help="path,speaker CSV of labelled files"
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="calibration JSON to write")
    parser.add_argument(
        "--n-trials",
        type=int,
        default=20000,
        metavar="N",
        help="seeded random trials (default 20000; 0: every pair of files)",
    )
    parser.add_argument(
        "--target-ratio",
        type=float,
        default=0.5,
        metavar="R",
        help="fraction of same-speaker trials (default 0.5)",
    )
    parser.add_argument(
        "--far",
        type=float,
        action="append",
        metavar="RATE",
        help="false-accept rate to name an operating point for (repeatable; default 0.01 0.001)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials (0)")
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="inputs per forward pass (32)"
    )


def run(args: argparse.Namespace) -> int:
    """Fit, write and summarise the calibration."""
    from voxvec.apps.calibration import DEFAULT_FARS, calibrate_manifest
    from voxvec.data.manifest import read_manifest

    calibration = calibrate_manifest(
        load_embedder(args),
        read_manifest(args.manifest),
        n_trials=args.n_trials or None,
        target_ratio=args.target_ratio,
        seed=args.seed,
        fars=tuple(args.far) if args.far else DEFAULT_FARS,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
        manifest=str(args.manifest),
    )
    calibration.save(args.out)
    fitted, quality = calibration.fitted_on, calibration.quality
    print(
        f"trials: {fitted['n_target']} target, {fitted['n_nontarget']} non-target, "
        f"{fitted['n_speakers']} speakers"
    )
    print(
        f"llr = {calibration.slope:.4f} * score + {calibration.offset:.4f}; EER "
        f"{quality['eer'] * 100:.2f}%, Cllr {quality['cllr']:.4f}, min Cllr "
        f"{quality['min_cllr']:.4f}"
    )
    for name, point in calibration.thresholds.items():
        print(
            f"{name:<8} threshold {point.score:.4f} (llr {point.llr:+.2f}): "
            f"FAR {point.far * 100:.2f}%, FRR {point.frr * 100:.2f}%"
        )
    print(f"calibration written to {args.out}")
    return 0
