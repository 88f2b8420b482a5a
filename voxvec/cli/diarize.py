"""Who spoke when: diarize recordings into speaker turns.

For each FILE, writes OUT/<file stem>.rttm (standard RTTM, the stem as recording id) and
OUT/<file stem>.json (source, duration, speakers, segments and exclusive segments), and prints
a readable timeline. Segments overlap where two speakers talk at once (with --segmentation);
--exclusive writes one speaker at a time into the RTTM (for aligning with transcripts).

With --store, a cluster that matches an enrolled speaker (the open-set rule of `voxvec
identify`: --threshold, or with --calibration the one for --far, else the model card's far1
point; and --margin over the runner-up) is given that name; the others are SPEAKER_00...

The number of speakers is estimated unless --num-speakers gives it (always respected);
--min-speakers / --max-speakers bound the estimate. A file that cannot be read is reported
with the reason and skipped; the exit code is then 1.

examples:
  voxvec diarize meeting.wav --out diar/
  voxvec diarize a.flac b.wav --num-speakers 2 --out diar/
  voxvec diarize call.wav --min-speakers 2 --max-speakers 4 --out diar/ \\
      --model ../shared/models/campplus-zh-en-common/campplus_cn_en_common.pt \\
      --segmentation ../shared/models/pyannote-segmentation-3.0/pytorch_model.bin
  voxvec diarize meeting.wav --store speakers/ --out diar/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxvec.apps.diarize import Namer
    from voxvec.apps.store import SpeakerStore
    from voxvec.inference import Embedder

from voxvec.cli.model_options import (
    add_threads_argument,
    apply_threads,
    describe_choices,
    model_choices,
)
from voxvec.cli.verify import add_decision_arguments

HELP = "who spoke when: speaker turns of recordings as RTTM, JSON and a timeline"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec diarize``."""
    from voxvec.audio.vad import METHODS as VAD_METHODS
    from voxvec.runtime import PRECISIONS

    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--out", "-o", required=True, type=Path, help="output folder")
    parser.add_argument("--num-speakers", type=int, default=None, help="the exact count")
    parser.add_argument("--min-speakers", type=int, default=None, help="lower bound (1)")
    parser.add_argument("--max-speakers", type=int, default=None, help="upper bound (10)")
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="speaker model: pretrained name, bundle or checkpoint (default: the default model)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... or auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="model arithmetic")
    add_threads_argument(parser)
    parser.add_argument(
        "--vad",
        choices=[m for m in VAD_METHODS if m != "off"],
        default="auto",
        help="speech detector when --segmentation is not given (default auto: silero-vad if "
        "installed, else energy)",
    )
    parser.add_argument(
        "--segmentation",
        type=Path,
        default=None,
        help="pyannote segmentation-3.0 checkpoint (pytorch_model.bin) for speech and "
        "overlapped speech (default: $VOXVEC_SEGMENTATION when set)",
    )
    parser.add_argument("--window-s", type=float, default=1.5, help="embedding window (1.5)")
    parser.add_argument("--hop-s", type=float, default=0.75, help="seconds between windows (0.75)")
    parser.add_argument("--exclusive", action="store_true", help="RTTM with one speaker at a time")
    parser.add_argument("--quiet", "-q", action="store_true", help="no timeline on stdout")
    parser.add_argument(
        "--store", metavar="DIR", default=None, help="name clusters after this store's speakers"
    )
    add_decision_arguments(parser, "with --store, as in `voxvec identify`")
    parser.add_argument(
        "--far",
        type=float,
        default=0.01,
        metavar="RATE",
        help="with --store and --calibration: share of strangers given a name (0.01)",
    )
    parser.add_argument(
        "--margin", type=float, default=0.05, metavar="M", help="least lead, in cosine (0.05)"
    )


def run(args: argparse.Namespace) -> int:
    """Diarize every file, write RTTM and JSON; 1 when any file failed."""
    import voxvec
    from voxvec.apps.diarize import (
        DiarizeConfig,
        Diarizer,
        SpeakerCount,
        VadActivity,
        write_outputs,
    )
    from voxvec.apps.segmentation import (
        SegmentationActivity,
        default_segmentation_path,
        load_segmentation,
    )
    from voxvec.audio.vad import resolve_method

    if args.num_speakers is not None and (
        args.min_speakers is not None or args.max_speakers is not None
    ):
        raise ValueError("give either --num-speakers or --min-speakers/--max-speakers, not both")
    SpeakerCount.of(args.num_speakers, args.min_speakers, args.max_speakers)  # fail early
    config = DiarizeConfig(window_s=args.window_s, hop_s=args.hop_s)
    segmentation = args.segmentation or default_segmentation_path()
    if segmentation is None:
        resolve_method(args.vad)  # a missing extra fails before any work
    activity = (
        SegmentationActivity(load_segmentation(segmentation))
        if segmentation is not None
        else VadActivity(args.vad)
    )
    store = None
    if args.store is not None:
        from voxvec.apps.store import SpeakerStore

        store = SpeakerStore.open(args.store)
    if args.model is None and store is not None:
        args.model = store.model.name
    apply_threads(args)
    embedder = voxvec.load(args.model, args.device, precision=args.precision)
    choices = model_choices(embedder, args)
    if segmentation is not None:
        choices["vad"] = f"segmentation {segmentation}"
    logger.info("%s", describe_choices(choices))
    diarizer = Diarizer(embedder, config, activity=activity, namer=_namer(args, store, embedder))
    failed = 0
    for path in args.files:
        try:
            result = diarizer(
                path,
                num_speakers=args.num_speakers,
                min_speakers=args.min_speakers,
                max_speakers=args.max_speakers,
            )
        except (OSError, ValueError) as err:
            print(f"voxvec diarize: {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        written = result.exclusive() if args.exclusive else result
        rttm, _ = write_outputs(written, args.out)
        if not args.quiet:
            print(written.timeline())
        logger.info("%s -> %s", path, rttm)
    return 1 if failed else 0


def _namer(
    args: argparse.Namespace, store: SpeakerStore | None, embedder: Embedder
) -> Namer | None:
    """The store's namer with the identification threshold of the options, or None."""
    if store is None:
        return None
    from voxvec.apps.calibration import Calibration, identification_threshold
    from voxvec.apps.diarize import store_namer

    calibration = Calibration.load(args.calibration) if args.calibration else None
    threshold = identification_threshold(
        args.threshold,
        embedder,
        max(1, len(store)),
        calibration=calibration,
        open_set_far=args.far,
    )
    if threshold is None:
        raise ValueError(
            "no threshold for --store: the model card has no far1 point; give --threshold or "
            "--calibration"
        )
    print(f"naming clusters: threshold {threshold.value:.4f} ({threshold.source})", file=sys.stderr)
    return store_namer(store, embedder, threshold.value, args.margin)
