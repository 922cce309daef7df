"""The store's directory of local WAL files: recovery, reading ranges, rolling, removal."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pitr.errors import CorruptData, file_error
from segments import CorruptFile, MidLogCorruption, SegmentsError
from segments.fsutil import fsync_dir, publish_atomically
from segments.record import Span
from segments.wal import TornTail, WalScan, abandon_unborn, scan_wal
from segments.wal_follow import read_wal_from

_WAL = re.compile(r"^(\d{20})\.wal$")
ARCHIVED_PREFIX = "archived-"
MARKER_HINT = ("the marker records how far that repository holds this store's commits and the time it was "
               "promised complete through; while it cannot be read no WAL file is removed. Restore the "
               "file, or move it aside if that repository is no longer used")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the WAL directory found."""

    scans: list[WalScan]
    last_lsn: int
    last_ts_ns: int
    torn: list[TornTail]


def to_corrupt(exc: SegmentsError) -> CorruptData:
    """Translate a segments error into pitr's, keeping path, offset, LSN and hint."""
    if isinstance(exc, CorruptFile):
        return CorruptData(str(exc), path=exc.path, offset=exc.offset, lsn=exc.lsn, hint=exc.hint)
    return CorruptData(str(exc))


class WalDirectory:
    """DATA/wal: numbered WAL files plus one `archived-*` marker per repository."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        self._resume: tuple[int, str, int] | None = None  # (next LSN, file, byte offset)

    def files(self) -> list[tuple[int, str]]:
        """(first_lsn, path) of every WAL file, in LSN order."""
        found = []
        for name in os.listdir(self.path):
            match = _WAL.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.path, name)))
        found.sort()
        return found

    def recover(self, applied_lsn: int, start_ts_ns: int) -> Recovery:
        """Scan every file, repair a torn tail on the last one, and check continuity."""
        files = self.files()
        scans: list[WalScan] = []
        torn: list[TornTail] = []
        last_lsn, last_ts = applied_lsn, start_ts_ns
        for i, (first_lsn, path) in enumerate(files):
            is_last = i == len(files) - 1
            try:
                scan = scan_wal(path, repair=is_last)
            except MidLogCorruption as exc:
                raise to_corrupt(exc) from exc
            except CorruptFile as exc:
                unborn = abandon_unborn(path) if is_last and exc.offset == 0 else None
                if unborn is None:
                    raise to_corrupt(exc) from exc
                torn.append(unborn)  # a crash interrupted the file's creation: it never held a commit
                continue
            except SegmentsError as exc:
                raise to_corrupt(exc) from exc
            except OSError as exc:
                raise file_error(exc, path, "recover the WAL file") from exc
            if scan.header.first_lsn != first_lsn:
                raise CorruptData(f"{path}: header says first LSN {scan.header.first_lsn}", path=path)
            if scan.torn is not None:
                if not is_last:
                    raise CorruptData(f"{path}: damaged records at offset {scan.torn.offset} in a WAL file "
                                      "that later files follow", path=path, offset=scan.torn.offset,
                                      hint="restore from the archive")
                torn.append(scan.torn)
            if scans and first_lsn != scans[-1].last_lsn + 1:
                raise CorruptData(f"{path}: starts at LSN {first_lsn} but the previous file ends at "
                                  f"{scans[-1].last_lsn}", path=path)
            scans.append(scan)
            if scan.spans:
                last_lsn, last_ts = scan.last_lsn, scan.spans[-1].ts_ns
        if scans and scans[0].header.first_lsn > applied_lsn + 1:
            raise CorruptData(f"{self.path}: WAL starts at LSN {scans[0].header.first_lsn} but the state "
                              f"is only checkpointed through {applied_lsn}", path=self.path)
        if scans and last_lsn < applied_lsn:
            raise CorruptData(f"{self.path}: WAL ends at LSN {last_lsn}, before the state's checkpoint "
                              f"{applied_lsn} (files lost?)", path=self.path)
        return Recovery(scans, last_lsn, last_ts, torn)

    def read_after(self, lsn: int, upto: int, max_bytes: int = 64 << 20) -> Iterator[tuple[bytes, list[Span]]]:
        """Checked records with lsn < LSN <= upto, as (bytes, spans) chunks in order."""
        files = self.files()
        expected = lsn + 1
        for i, (first_lsn, path) in enumerate(files):
            next_first = files[i + 1][0] if i + 1 < len(files) else None
            if next_first is not None and next_first <= expected:
                continue
            if first_lsn > expected:
                raise CorruptData(f"{path}: LSNs {expected}..{first_lsn - 1} are missing from the WAL",
                                  path=path)
            offset = 0
            if self._resume is not None and self._resume[0] == expected and self._resume[1] == path:
                offset = self._resume[2]
            while expected <= upto:
                try:
                    chunk = read_wal_from(path, offset, expected, upto, max_bytes)
                except SegmentsError as exc:
                    raise to_corrupt(exc) from exc
                if not chunk.spans:
                    break
                expected = chunk.spans[-1].lsn + 1
                offset = chunk.next_offset
                self._resume = (expected, path, offset)
                yield chunk.data, chunk.spans
            if expected > upto:
                return
        if expected <= upto:
            raise CorruptData(f"{self.path}: the WAL ends at LSN {expected - 1}, expected up to {upto}",
                              path=self.path)

    def remove_through(self, lsn: int) -> list[str]:
        """Delete WAL files all of whose records have LSN <= lsn (never the newest file)."""
        files = self.files()
        removed = []
        for (_first, path), (next_first, _p) in zip(files, files[1:], strict=False):
            if next_first - 1 <= lsn:
                try:
                    os.unlink(path)
                except OSError as exc:
                    raise file_error(exc, path, "remove the archived WAL file") from exc
                removed.append(path)
        if removed:
            fsync_dir(self.path)
        return removed

    # archive markers -----------------------------------------------------------
    def mark_archived(self, repo_key: str, lsn: int, repo_url: str, complete_through_ns: int | None = None) -> None:
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

        publish_atomically(os.path.join(self.path, ARCHIVED_PREFIX + repo_key), write, overwrite=True)

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
