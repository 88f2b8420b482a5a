"""Evaluate speaker verification: EER, minDCF, Cllr and a speaker-bootstrap confidence interval.

Every file named by the trials is embedded once (in batches); a file that cannot be embedded is
reported and its trials are dropped. Trials come from a VoxCeleb-style list (--trials: lines
"label path1 path2", 1 = same speaker) or are generated from the manifest: every pair of files,
or with --n-trials a seeded random sample with --target-ratio same-speaker pairs (save it with
--write-trials so others score the same trials). Every trial file must be in the manifest, which
gives the speakers for the confidence interval: the EER is recomputed on --n-bootstrap
resamplings of the speakers (with replacement) and the middle 95% of those EERs is reported.
Calibration quality: min Cllr (the cost, in bits, after the best monotone calibration of these
scores: discrimination only) always, and Cllr of the calibrated log-likelihood ratios with
--calibration (a file from `voxvec calibrate`, fitted on other speakers): the gap between them is
the cost of miscalibration.

Files that cannot be embedded are counted by reason (too little speech: --min-speech-s; no
speech; unreadable...) in one line; -v lists each. --write-scores saves every scored trial
(path1,path2,score[,as_norm],label); --write-thresholds saves the evaluated model as a bundle
whose card holds this run's eer and far1 thresholds, so `verify` and `identify` can decide with
it (run it on labelled speakers you will not test on, e.g. a validation split).

examples:
  voxvec eval --model convgru-rf5 --manifest test.csv --n-trials 20000 \\
      --write-trials trials.txt --json report.json --write-scores scores.csv
  voxvec eval --model run/model.safetensors --manifest vox1_test.csv \\
      --trials veri_test2.txt --trials-root /data/vox1/wav --cohort cohort.csv
  voxvec eval --model run/model.safetensors --manifest valid.csv --n-trials 40000 \\
      --write-thresholds run/model-with-thresholds.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from voxvec.cli.model_options import add_model_arguments, load_embedder

if TYPE_CHECKING:
    from voxvec.eval.verify import VerificationReport
    from voxvec.inference import Embedder

HELP = "evaluate verification (EER, minDCF, bootstrap CI) on a path,speaker manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the options of ``voxvec eval``."""
    from voxvec.eval.plots import METHODS

    add_model_arguments(parser)
    parser.add_argument(
        "--manifest", required=True, metavar="CSV", help="path,speaker CSV of the test files"
    )
    trials = parser.add_mutually_exclusive_group()
    trials.add_argument("--trials", metavar="FILE", help="trial list: 'label path1 path2' lines")
    trials.add_argument(
        "--n-trials",
        type=int,
        metavar="N",
        help="generate N random trials from the manifest (default: all pairs of files)",
    )
    parser.add_argument(
        "--trials-root",
        metavar="DIR",
        help="folder that relative trial paths are relative to (default: the trial file's)",
    )
    parser.add_argument(
        "--target-ratio",
        type=float,
        default=0.5,
        metavar="R",
        help="fraction of same-speaker trials among --n-trials (default: 0.5)",
    )
    parser.add_argument("--write-trials", metavar="FILE", help="save the generated trials here")
    parser.add_argument(
        "--cohort",
        metavar="CSV",
        help="path,speaker CSV of cohort speakers (not the test speakers) for AS-norm",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=200,
        metavar="K",
        help="AS-norm cohort speakers per side (default: 200)",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="write a 2-D projection of embeddings")
    parser.add_argument(
        "--plot-method", choices=METHODS, default="umap", help="projection method (default: umap)"
    )
    parser.add_argument(
        "--plot-speakers",
        type=int,
        default=20,
        metavar="N",
        help="speakers shown in the plot (default: 20)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument(
        "--write-scores",
        metavar="CSV",
        help="write every scored trial: path1,path2,score[,as_norm],label",
    )
    parser.add_argument(
        "--write-thresholds",
        metavar="FILE.safetensors",
        help="save the model as a bundle with this run's eer and far1 thresholds in its card",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE",
        help="calibration of this model (voxvec calibrate): report the Cllr of its llrs",
    )
    parser.add_argument(
        "--n-bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap rounds for the EER interval; 0 skips it (default: 1000)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of trial sampling and bootstrap (default: 0)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="inputs per forward pass (default: 32)",
    )


def run(args: argparse.Namespace) -> int:
    """Read or generate the trials, evaluate, print the table; write JSON, trials, scores, a
    bundle with thresholds, a plot."""
    import numpy as np

    from voxvec.apps.calibration import Calibration
    from voxvec.apps.identity import ModelIdentity
    from voxvec.atomic import atomic_open
    from voxvec.cli.model_options import model_choices
    from voxvec.data.manifest import read_manifest
    from voxvec.eval.plots import check_plot_dependencies, plot_embeddings
    from voxvec.eval.trials import generate_trials, read_trials, write_scores, write_trials
    from voxvec.eval.verify import evaluate, path_key

    if args.plot:
        check_plot_dependencies(args.plot_method)  # before any work
    if args.write_thresholds and Path(args.write_thresholds).suffix != ".safetensors":
        raise ValueError(
            f"--write-thresholds writes a .safetensors bundle, got {args.write_thresholds}"
        )
    items = read_manifest(args.manifest)
    if args.trials is not None:
        if args.write_trials:
            raise ValueError("--write-trials saves generated trials; it cannot go with --trials")
        trials = read_trials(args.trials, root=args.trials_root)
        source = str(args.trials)
    else:
        trials = generate_trials(items, args.n_trials, args.target_ratio, seed=args.seed)
        source = "all pairs" if args.n_trials is None else f"{args.n_trials} sampled"
        if args.write_trials:
            write_trials(trials, args.write_trials, relative_to=Path(args.write_trials).parent)

    cohort_items = read_manifest(args.cohort) if args.cohort else None
    embedder = load_embedder(args)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    if calibration is not None:
        calibration.check_model(ModelIdentity.of(embedder))
    report = evaluate(
        embedder,
        items,
        trials,
        cohort_items=cohort_items,
        top_k=args.top_k,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
        n_bootstrap=args.n_bootstrap,
        seed=args.seed,
        llr=None if calibration is None else calibration.llr,
    )
    print(report.format_table())
    hint = _failure_hint(report.failed_files, args.min_speech_s)
    if hint:
        print(hint, file=sys.stderr)
    choices = model_choices(embedder, args)

    if args.json:
        document = {
            **choices,
            "manifest": str(args.manifest),
            "trials": source,
            "cohort": args.cohort,
            "calibration": args.calibration,
            **report.to_dict(),
        }
        with atomic_open(args.json) as f:
            f.write(json.dumps(document, indent=2) + "\n")
        print(f"report written to {args.json}")
    if args.write_scores:
        scores = {"score": report.scores}
        if report.normalized_scores is not None:
            scores["as_norm"] = report.normalized_scores
        pairs = [(t.path1, t.path2) for t in report.trials]
        write_scores(args.write_scores, pairs, scores, [t.label for t in report.trials])
        print(f"{len(pairs)} trial scores written to {args.write_scores}")
    if args.write_thresholds:
        _write_thresholds(embedder, report, args, source, choices)
    if args.plot:
        speaker_of = {path_key(item.path): item.speaker for item in items}
        written = plot_embeddings(
            np.stack(list(report.embeddings.values())),
            [speaker_of[key] for key in report.embeddings],
            args.plot,
            method=args.plot_method,
            max_speakers=args.plot_speakers,
            seed=args.seed,
        )
        print(f"plot written to {written}")
    return 0


def _failure_hint(failed_files: dict[str, str], min_speech_s: float) -> str:
    """The option that would embed files that failed for too little (or no) speech, or ""."""
    from voxvec.eval.verify import NO_SPEECH, TOO_LITTLE_SPEECH, failure_reasons

    reasons = failure_reasons(failed_files)
    short = reasons.get(TOO_LITTLE_SPEECH, 0) + reasons.get(NO_SPEECH, 0)
    if not short:
        return ""
    return (
        f"{short} file(s) failed for too little or no speech at --min-speech-s {min_speech_s:g}: "
        "a lower value embeds the short ones, 0 embeds them all (-v lists each file)"
    )


def _write_thresholds(
    embedder: Embedder,
    report: VerificationReport,
    args: argparse.Namespace,
    source: str,
    choices: dict[str, object],
) -> None:
    """Save the evaluated model as a bundle whose card has this run's raw-score thresholds."""
    from voxvec.cli.model_options import describe_choices
    from voxvec.weights import save_bundle

    raw = report.raw
    points = raw.operating_points()
    settings = describe_choices({k: v for k, v in choices.items() if k != "model"})
    card = {
        **embedder.card,
        "thresholds": {name: round(value, 4) for name, value in points.items()},
        "thresholds_from": (
            f"voxvec eval on {args.manifest} ({report.n_speakers} speakers, {source} trials: "
            f"{report.n_target} target, {report.n_nontarget} non-target; {settings}, "
            f"min_speech_s {args.min_speech_s:g}): EER {raw.eer * 100:.2f}% at cosine "
            f"{raw.eer_threshold:.4f}; {raw.far * 100:g}% false accepts at "
            f"{raw.far_threshold:.4f} (false rejects {raw.frr_at_far * 100:.1f}%)"
        ),
    }
    written = save_bundle(embedder.model, args.write_thresholds, card)
    shown = ", ".join(f"{name} {value:.4f}" for name, value in card["thresholds"].items())
    print(f"model with thresholds {shown} written to {written}")
