"""Holes in the history, as the audit commands (history, log, diff, get --at) show them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pitr.audit import Hole, find_holes, gap_json
from pitr.audit.holes import describe_hole
from pitr.cli.common import print_json
from pitr.errors import Gap
from pitr.repo.repository import Repository


def add_allow_gaps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-gaps", action="store_true",
                        help="answer with what the archive holds when it has holes (each is named; exit 0)")


async def synced_holes(repo: Repository) -> list[Hole]:
    """Catch the catalog up, then the holes of the history, damaged segments named with their error."""
    await repo.sync()
    return find_holes(repo.catalog, await repo.require_identity())


def print_gap(gap: Gap, holes: Sequence[Hole], as_json: bool) -> None:
    """The hole, in place in a listing: a {"gap": ...} JSON line, or one text line."""
    if as_json:
        print_json(gap_json(gap))
        return
    hole = next((h for h in holes if h.gap == gap), None)
    print(f"--- hole: {describe_hole(hole) if hole is not None else gap}; the changes in it are unknown",
          flush=True)


def summarize_gaps(command: str, gaps: Sequence[Gap], holes: Sequence[Hole]) -> None:
    """The summary on stderr after an answer given over holes (--allow-gaps)."""
    if not gaps:
        return
    count = "1 hole" if len(gaps) == 1 else f"{len(gaps)} holes"
    print(f"pitr {command}: the answer spans {count} in the archived history (--allow-gaps):", file=sys.stderr)
    for gap in gaps:
        hole = next((h for h in holes if h.gap == gap), None)
        print(f"  {describe_hole(hole) if hole is not None else gap}", file=sys.stderr)
