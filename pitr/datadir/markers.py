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

DATA/FOLLOWER marks a warm standby (`pitr.follow`): a store that applies a
repository's history and refuses every writer until `pitr promote`
(docs/format.md "Follower marker").
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from pitr.errors import CorruptData, file_error
from segments.fsutil import fsync_dir, publish_atomically

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


# The follower marker ---------------------------------------------------------------------------------

FOLLOWER_NAME = "FOLLOWER"
FOLLOWER_FORMAT = 1
MAX_FOLLOWER_BYTES = 1 << 16
FOLLOWER_HINT = ("the FOLLOWER file says which repository this standby follows and where its chain stands; "
                 "restore the standby again (pitr restore --latest --follow --force --dest DIR)")


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    """A position in the followed history: every commit through `lsn` is applied, and the log's chain
    digest at `lsn` is `chain_digest`."""

    lsn: int
    chain_digest: bytes


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion under way: the new history's store id and where it starts (so a rerun finishes it)."""

    store_id: uuid.UUID
    lsn: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class FollowerMarker:
    """DATA/FOLLOWER: the store is a read-only standby applying the history of `source_store_id` from `repo`.

    `anchors` holds the position applied before the step under way and the one it is applying (the
    state's checkpoint is at one of them, whichever the step reached); `promotion` is set by
    `pitr promote` before it gives the store its new history, and the file is removed when done.
    """

    repo: str
    source_store_id: uuid.UUID
    anchors: tuple[ChainAnchor, ...]
    promotion: Promotion | None = None

    def anchor_at(self, lsn: int) -> ChainAnchor | None:
        return next((a for a in self.anchors if a.lsn == lsn), None)

    def encode(self) -> bytes:
        doc = {"format": FOLLOWER_FORMAT, "repo": self.repo, "source_store_id": str(self.source_store_id),
               "anchors": [[a.lsn, a.chain_digest.hex()] for a in self.anchors],
               "promotion": None if self.promotion is None else {
                   "store_id": str(self.promotion.store_id), "lsn": self.promotion.lsn,
                   "ts_ns": self.promotion.ts_ns}}
        return json.dumps(doc, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, raw: bytes, path: str) -> FollowerMarker:
        """Parse and check a marker; CorruptData naming `path` and the field when it is wrong."""
        def bad(what: str) -> CorruptData:
            return CorruptData(f"{path}: the follower marker is damaged ({what})", path=path, hint=FOLLOWER_HINT)

        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise bad("not JSON") from exc
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        if doc.get("format") != FOLLOWER_FORMAT:
            raise CorruptData(f"{path}: follower marker format {doc.get('format')!r}; this pitr reads format "
                              f"{FOLLOWER_FORMAT}", path=path, hint=FOLLOWER_HINT)
        repo, anchors, promotion = doc.get("repo"), doc.get("anchors"), doc.get("promotion")
        if not isinstance(repo, str) or not repo:
            raise bad("repo")
        source = _uuid(doc.get("source_store_id"))
        if source is None:
            raise bad("source_store_id")
        if not isinstance(anchors, list) or not 1 <= len(anchors) <= 2:
            raise bad("anchors: one or two")
        parsed = []
        for item in anchors:
            if not (isinstance(item, list) and len(item) == 2 and _lsn(item[0]) and isinstance(item[1], str)):
                raise bad("anchors: [LSN, chain digest]")
            try:
                digest = bytes.fromhex(item[1])
            except ValueError as exc:
                raise bad("anchors: the chain digest is not hex") from exc
            if len(digest) != 32:
                raise bad("anchors: the chain digest is not 32 bytes")
            parsed.append(ChainAnchor(item[0], digest))
        promoted = None
        if promotion is not None:
            new_id = _uuid(promotion.get("store_id")) if isinstance(promotion, dict) else None
            if new_id is None or not _lsn(promotion.get("lsn")) or not _lsn(promotion.get("ts_ns")):
                raise bad("promotion")
            promoted = Promotion(new_id, promotion["lsn"], promotion["ts_ns"])
        return cls(repo, source, tuple(parsed), promoted)


def _lsn(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def follower_path(data_dir: str) -> str:
    return os.path.join(data_dir, FOLLOWER_NAME)


def read_follower(data_dir: str) -> FollowerMarker | None:
    """The follower marker of the store at `data_dir`, None when it is not a follower."""
    path = follower_path(data_dir)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FOLLOWER_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, "read the follower marker", hint=FOLLOWER_HINT) from exc
    if len(raw) > MAX_FOLLOWER_BYTES:
        raise CorruptData(f"{path}: the follower marker is larger than {MAX_FOLLOWER_BYTES} bytes", path=path,
                          hint=FOLLOWER_HINT)
    return FollowerMarker.decode(raw, path)


def write_follower(data_dir: str, marker: FollowerMarker) -> None:
    """Replace the follower marker atomically (fsynced, directory fsynced; private to the user)."""
    data = marker.encode()

    def write(fh: BinaryIO) -> None:
        fh.write(data)

    path = follower_path(data_dir)
    try:
        publish_atomically(path, write, overwrite=True)
    except OSError as exc:
        raise file_error(exc, path, "write the follower marker") from exc


def remove_follower(data_dir: str) -> None:
    """Remove the follower marker (durably: the directory is fsynced); a missing one is already removed."""
    path = follower_path(data_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise file_error(exc, path, "remove the follower marker") from exc
    try:
        fsync_dir(data_dir)
    except OSError as exc:
        raise file_error(exc, data_dir, "sync the store directory") from exc
