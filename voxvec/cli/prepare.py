"""Build path,speaker CSVs (train.csv, valid.csv, test.csv) from speech corpora.

Give each corpus by its root folder; every option may be repeated (e.g. two LibriSpeech
subsets). Speaker ids get a corpus prefix (ls-, vctk-, cv-, vox1-, vox2-, or the folder name for
--folders) so corpora merge without clashes. Held-out speakers (--valid-speakers,
--test-speakers) are chosen at random with --seed and never appear in train.csv. Files that are
missing or (with --check-audio) unreadable are listed in OUT_DIR/unreadable.csv.

example:
  voxvec prepare --librispeech /data/LibriSpeech/train-clean-100 --vctk /data/VCTK-Corpus-0.92 \\
      --out-dir splits --valid-speakers 20 --seed 0
"""

from __future__ import annotations

import argparse

HELP = "build path,speaker train/valid/test CSVs from LibriSpeech, VCTK, Common Voice, VoxCeleb"

_CORPUS_HELP = {
    "librispeech": "LibriSpeech root or one subset (<subset>/<speaker>/<chapter>/*.flac)",
    "vctk": "VCTK root (wav48_silence_trimmed/<spk>/*_mic1.flac or wav48/<spk>/*.wav)",
    "commonvoice": "Common Voice locale folder (validated.tsv + clips/) or a folder of them",
    "vox1": "VoxCeleb1 root (<idNNNNN>/<video>/*.wav, also below wav/)",
    "vox2": "VoxCeleb2 root (<idNNNNN>/<video>/*.m4a|.wav, also below aac/ or dev/aac/)",
    "folders": "generic layout: one sub-folder per speaker, audio anywhere below it",
    "manifest": "an existing path,speaker CSV (speaker ids kept as they are)",
}
"""Help of each corpus option; the corpus kinds themselves are voxvec.data.prepare.CORPORA."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the options of ``voxvec prepare``."""
    from voxvec.data.prepare import CORPORA

    corpora = parser.add_argument_group("corpora (each may be repeated)")
    for name in CORPORA:
        corpora.add_argument(
            f"--{name}", action="append", default=[], metavar="PATH", help=_CORPUS_HELP[name]
        )
    parser.add_argument("--out-dir", required=True, help="folder for the CSVs (created)")
    parser.add_argument(
        "--valid-speakers",
        type=int,
        default=0,
        metavar="N",
        help="speakers held out for valid.csv (default: 0, no valid.csv)",
    )
    parser.add_argument(
        "--test-speakers",
        type=int,
        default=0,
        metavar="N",
        help="speakers held out for test.csv (default: 0, no test.csv)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="instead of --valid-speakers: hold out this fraction of each corpus's speakers "
        "(at least 1 per corpus)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="instead of --test-speakers: this fraction of each corpus's speakers (at least 2)",
    )
    parser.add_argument(
        "--relative",
        action="store_true",
        help="write paths relative to --out-dir (portable split files) instead of absolute",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the speaker split (default: 0)"
    )
    parser.add_argument(
        "--check-audio",
        action="store_true",
        help="open every file's header with soundfile and leave out unreadable ones (slower)",
    )
    parser.add_argument(
        "--vctk-mic",
        default="mic1",
        choices=("mic1", "mic2"),
        help="VCTK 0.92 microphone to keep (default: mic1)",
    )
    parser.add_argument(
        "--commonvoice-tsv",
        default="validated.tsv",
        metavar="NAME",
        help="Common Voice list to read (default: validated.tsv)",
    )


def run(args: argparse.Namespace) -> int:
    """Scan, split, write; print a summary table. Returns the exit code."""
    from voxvec.data.prepare import CORPORA, prepare

    sources = [(name, path) for name in CORPORA for path in getattr(args, name)]
    report = prepare(
        sources,
        args.out_dir,
        n_valid=args.valid_speakers,
        n_test=args.test_speakers,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        relative_paths=args.relative,
        seed=args.seed,
        check_audio=args.check_audio,
        vctk_mic=args.vctk_mic,
        commonvoice_tsv=args.commonvoice_tsv,
        progress=True,
    )
    print(report.format_table())
    return 0
