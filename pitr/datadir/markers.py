"""Archive markers: how far each repository holds a store's commits, and what was promised.

The protocol between a store and its archivers (docs/architecture.md):

- An archiver writes DATA/wal/archived-<repo key> (atomically, fsynced) after
  a segment is indexed in that repository: `lsn` is the last commit the
  repository now holds. Before it publishes a completeness watermark it
  records the watermark's time here first (`complete_through_ns`).
- The store reads the markers to decide which WAL files it may delete (only
  those every marked repository holds, `archived_lsns`) and, when it opens,
  never times a commit at or before the latest promise
  (`promised_complete_ns`), even if the clock stepped back across a restart.
- A marker that cannot be read is an error, never "no marker": a caller
  deciding what to delete must then keep everything.
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO

from pitr.errors import CorruptData, file_error
from segments.fsutil import publish_atomically

ARCHIVED_PREFIX = "archived-"
MARKER_HINT = ("the marker records how far that repository holds this store's commits and the time it was "
               "promised complete through; while it cannot be read no WAL file is removed. Restore the "
               "file, or move it aside if that repository is no longer used")


class ArchiveMarkers:
    """The `archived-*` files of one WAL directory."""

    def __init__(self, wal_path: str) -> None:
        self.path = wal_path

    def mark(self, repo_key: str, lsn: int, repo_url: str, complete_through_ns: int | None = None) -> None:
        """Record that every commit up to `lsn` is in the repository `repo_key`.

        `complete_through_ns` records a promise about to be published: no commit
        will ever be timed at or before it (the store reads it when it opens, so
        the promise holds even if the clock steps back across a restart).
        """
        if complete_through_ns is None:
            previous = self._read_marker(repo_key)
            kept = None if previous is None else previous.get("complete_through_ns")
            complete_through_ns = kept if isinstance(kept, int) else None
        data = json.dumps({"lsn": lsn, "repo": repo_url, "complete_through_ns": complete_through_ns}).encode()

        def write(fh: BinaryIO) -> None:
            fh.write(data)

        path = os.path.join(self.path, ARCHIVED_PREFIX + repo_key)
        try:
            publish_atomically(path, write, overwrite=True)
        except OSError as exc:
            raise file_error(exc, path, "write the archive marker") from exc

    def _read_marker(self, repo_key: str) -> dict[str, object] | None:
        """The marker's document, None when there is none; a marker that cannot be read is an error."""
        path = os.path.join(self.path, ARCHIVED_PREFIX + repo_key)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(1 << 16)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise file_error(exc, path, "read the archive marker", hint=MARKER_HINT) from exc
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CorruptData("the archive marker is not JSON", path=path, hint=MARKER_HINT) from exc
        lsn = doc.get("lsn") if isinstance(doc, dict) else None
        through = doc.get("complete_through_ns") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or type(lsn) is not int or lsn < 0 \
                or not (through is None or (type(through) is int and 0 <= through < 1 << 63)):
            raise CorruptData("the archive marker does not hold a valid LSN and completeness time",
                              path=path, hint=MARKER_HINT)
        return doc

    def _markers(self) -> dict[str, dict[str, object]]:
        found = {}
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise file_error(exc, self.path, "list the WAL directory") from exc
        for name in names:
            if name.startswith(ARCHIVED_PREFIX):
                doc = self._read_marker(name[len(ARCHIVED_PREFIX):])
                if doc is not None:
                    found[name[len(ARCHIVED_PREFIX):]] = doc
        return found

    def archived_lsns(self) -> dict[str, int]:
        """How far each repository this store archives into holds its commits.

        Raises (CorruptData, FileError) when a marker cannot be read: a caller
        deciding what to delete must keep everything then.
        """
        found = {}
        for key, doc in self._markers().items():
            lsn = doc["lsn"]
            assert isinstance(lsn, int)  # checked by _read_marker
            found[key] = lsn
        return found

    def promised_complete_ns(self) -> int:
        """The latest time any archive was told no commit would follow (0 if none)."""
        times = [doc.get("complete_through_ns") for doc in self._markers().values()]
        return max((t for t in times if isinstance(t, int)), default=0)
