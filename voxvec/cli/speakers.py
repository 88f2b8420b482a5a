"""List, show, remove or rename the speakers of a speaker store (no model is loaded).

examples:
  voxvec speakers list --store speakers/
  voxvec speakers show alice --store speakers/ --json
  voxvec speakers rename alice "Alice Smith" --store speakers/
  voxvec speakers remove bob --store speakers/
"""

from __future__ import annotations

import argparse
import json

from voxvec.cli.enroll import add_store_argument

HELP = "list, show, remove or rename enrolled speakers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec speakers``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every enrolled speaker with its count")
    show = actions.add_parser("show", help="one speaker: count, files, metadata, times")
    show.add_argument("name")
    remove = actions.add_parser("remove", help="forget a speaker")
    remove.add_argument("name")
    rename = actions.add_parser("rename", help="give a speaker another name")
    rename.add_argument("old")
    rename.add_argument("new")
    for sub in (listing, show, remove, rename):
        add_store_argument(sub)
    for sub in (listing, show):
        sub.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Carry out the action and print its result."""
    from voxvec.apps.store import SpeakerStore

    store = SpeakerStore.open(args.store)
    if args.action == "list":
        speakers = store.speakers()
        if args.json:
            print(json.dumps([s.to_dict() for s in speakers], ensure_ascii=False))
        else:
            print(f"{len(speakers)} speaker(s), model {store.model.name}")
            for speaker in speakers:
                print(f"{speaker.name}\t{speaker.count}\t{speaker.updated}")
    elif args.action == "show":
        details = store.get(args.name).to_dict()
        if args.json:
            print(json.dumps(details, ensure_ascii=False))
        else:
            for key, value in details.items():
                print(f"{key}: {value}")
    elif args.action == "remove":
        store.remove(args.name)
        print(f"removed {args.name!r}; {len(store)} speaker(s) left")
    else:
        store.rename(args.old, args.new)
        print(f"renamed {args.old!r} to {args.new!r}")
    return 0
