"""The segment files of a local repository that hold its history.

A write-once repository keeps the inputs of a merge beside the merged segment
until `pitr cleanup`; they are superseded, and readers, verify and restore skip
them. Tests that count or pick "the repository's segments" mean these.
"""

from __future__ import annotations

from pathlib import Path

from pitr.repo.repository import live_segments


def live_segment_files(repo_dir: str | Path) -> list[Path]:
    """The live (not superseded) segment files under `repo_dir`/segments, in name order."""
    directory = Path(repo_dir) / "segments"
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    keep, _superseded = live_segments(names)
    return [directory / n for n in names if n in keep]


def newest_watermark_file(repo_dir: str | Path) -> Path | None:
    """The watermark object readers use (the newest by name: LSN, then time), or None when there is none."""
    directory = Path(repo_dir) / "watermarks"
    names = sorted(p.name for p in directory.iterdir() if p.name.endswith(".wmk")) if directory.is_dir() else []
    return directory / names[-1] if names else None
