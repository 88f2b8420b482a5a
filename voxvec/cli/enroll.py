"""Enroll a speaker's recordings into a speaker store (created on first use).

The recordings are files or folders (their audio files, recursively); with --manifest, a
path,speaker CSV enrolls every speaker in it at once. A name already enrolled gets the new
recordings added (its mean is recomputed). The store keeps each recording's embedding, the
count, the files' names and --meta KEY=VALUE metadata, and the model that made them: a store
refuses another model. Without --model, a store's own model is used. Files that cannot be
embedded are reported and skipped (exit code 1).

examples:
  voxvec enroll alice alice1.wav alice2.flac --store speakers/
  voxvec enroll bob recordings/bob/ --store speakers/ --meta team=red --meta id=42
  voxvec enroll --manifest staff.csv --store speakers/
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from voxvec.cli.export import metadata_entry
from voxvec.cli.model_options import add_model_arguments, load_embedder

if TYPE_CHECKING:
    from voxvec.apps.store import SpeakerStore
    from voxvec.inference import Embedder

HELP = "enroll a speaker's recordings into a speaker store"


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """Attach --store (shared by enroll, identify and speakers)."""
    parser.add_argument("--store", required=True, metavar="DIR", help="the speaker store folder")


def store_and_embedder(args: argparse.Namespace, create: bool) -> tuple[SpeakerStore, Embedder]:
    """The store of ``args.store`` and the model of the options (the store's own by default).

    Args:
        args: parsed options (``store``, ``model`` and the other model options, ``index``).
        create: create the store for the model when there is none.

    Raises:
        FileNotFoundError: no store and ``create`` is False.
    """
    from pathlib import Path

    from voxvec.apps.identity import ModelIdentity
    from voxvec.apps.store import MANIFEST, SpeakerStore

    index = getattr(args, "index", "exact")
    exists = (Path(args.store) / MANIFEST).exists()
    store = SpeakerStore.open(args.store, index=index) if exists or not create else None
    if args.model is None and store is not None:
        args.model = store.model.name
    embedder = load_embedder(args)
    if store is None:
        store = SpeakerStore.open_or_create(args.store, ModelIdentity.of(embedder), index=index)
    return store, embedder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec enroll``."""
    parser.add_argument("name", nargs="?", help="the speaker's name (any text)")
    parser.add_argument("files", nargs="*", help="audio files or folders of this speaker")
    parser.add_argument("--manifest", metavar="CSV", help="path,speaker CSV: enroll every speaker")
    add_store_argument(parser)
    parser.add_argument(
        "--meta",
        type=metadata_entry,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata to store with the speaker(s) (repeatable)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="inputs per forward pass (16)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Embed and enroll; print what was enrolled."""
    from voxvec.apps.identify import enroll_files
    from voxvec.data.manifest import group_by_speaker, read_manifest
    from voxvec.embedding_files import collect_inputs

    if args.manifest:
        if args.name or args.files:
            raise ValueError("give either NAME FILE... or --manifest CSV, not both")
        groups = group_by_speaker(read_manifest(args.manifest))
        files_by_name = {name: [item.path for item in items] for name, items in groups.items()}
    else:
        if not args.name or not args.files:
            raise ValueError("give a speaker NAME and at least one FILE (or --manifest CSV)")
        files_by_name = {args.name: collect_inputs(args.files).paths}
    store, embedder = store_and_embedder(args, create=True)
    report = enroll_files(
        store,
        embedder,
        files_by_name,
        metadata=dict(args.meta),
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
        on_failure=lambda failure: print(f"skipped {failure.message}", file=sys.stderr),
    )
    for name, added in report.enrolled.items():
        print(f"enrolled {name!r}: +{added} recording(s), {store.get(name).count} in all")
    print(
        f"store {store.path}: {len(store)} speaker(s); {len(report.failures)} file(s) failed",
        file=sys.stderr,
    )
    return 1 if report.failures else 0
