"""DATA/wal: the store's numbered WAL files: recovery, reading checked ranges, removal.

The archive markers beside them are `pitr.datadir.markers`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pitr.datadir.markers import ArchiveMarkers
from pitr.errors import CorruptData, file_error, to_corrupt
from segments import CorruptFile, MidLogCorruption, SegmentsError
from segments.fsutil import fsync_dir
from segments.record import Span
from segments.wal import (
    HEADER_SIZE,
    MID_LOG_HINT,
    TornTail,
    WalHeader,
    WalScan,
    abandon_unborn,
    decode_header,
    scan_wal,
)
from segments.wal_follow import read_wal_from

_WAL = re.compile(r"^(\d{20})\.wal$")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the WAL directory found."""

    scans: list[WalScan]
    last_lsn: int
    last_ts_ns: int
    torn: list[TornTail]
    #: (path, header) of every WAL file, the ones before the checkpoint's hint (not scanned) too
    headers: list[tuple[str, WalHeader]]


def hinted_offset(path: str, first_lsn: int, applied: int, hint: tuple[int, int]) -> int:
    """The hinted offset in the WAL file `path` (whose first LSN is `first_lsn`) if a checked unit
    there starts a run of units reaching LSN `applied`, else 0 (the file's start).

    `hint` is the checkpoint's (first LSN of the WAL file, byte offset of the group ending at
    `applied`). The unit's own checksums are checked and the units after it with the LSN density
    check (`read_wal_from`), so a wrong hint costs a scan from the start, never an answer."""
    hint_file, offset = hint
    if hint_file != first_lsn or offset < HEADER_SIZE or applied < first_lsn:
        return 0
    try:
        chunk = read_wal_from(path, offset, applied, applied)
    except (SegmentsError, OSError):
        return 0
    return offset if chunk.spans and chunk.spans[0].lsn == applied else 0



class WalDirectory:
    """DATA/wal: numbered WAL files; `markers` are the archive markers kept beside them."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.markers = ArchiveMarkers(path)
        #: where the last `read_after` stopped, (next LSN, file, byte offset): the next read after
        #: that LSN starts there instead of scanning the file from its start; a reader in another
        #: process carries it between calls
        self.resume: tuple[int, str, int] | None = None

    def files(self) -> list[tuple[int, str]]:
        """(first_lsn, path) of every WAL file, in LSN order."""
        found = []
        for name in os.listdir(self.path):
            match = _WAL.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.path, name)))
        found.sort()
        return found

    def recover(self, applied_lsn: int, start_ts_ns: int, hint: tuple[int, int] = (0, 0)) -> Recovery:
        """Scan the files, repair a torn tail on the last one, and check continuity.

        With the checkpoint's WAL position `hint` (docs/decisions.md, "Start-up: what the writer
        checks at open"), when a checked group at that position holds LSN `applied_lsn`, the scan
        starts there: the records before it are applied (the state's row checksums cover them) and
        of the files before it only the headers are read. Otherwise every file is scanned whole."""
        files = self.files()
        start_file, start = self._hinted_start(files, applied_lsn, hint)
        scans: list[WalScan] = []
        torn: list[TornTail] = []
        headers: list[tuple[str, WalHeader]] = []
        last_lsn, last_ts = applied_lsn, start_ts_ns
        for i, (first_lsn, path) in enumerate(files):
            is_last = i == len(files) - 1
            if i < start_file:  # wholly before the checkpoint: its header only
                headers.append((path, self._header(path, first_lsn)))
                continue
            try:
                scan = self._scan(path, is_last, start if i == start_file else HEADER_SIZE, applied_lsn)
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
            headers.append((path, scan.header))
            if scan.spans:
                last_lsn, last_ts = scan.last_lsn, scan.spans[-1].ts_ns
        if headers and headers[0][1].first_lsn > applied_lsn + 1:
            raise CorruptData(f"{self.path}: WAL starts at LSN {headers[0][1].first_lsn} but the state "
                              f"is only checkpointed through {applied_lsn}", path=self.path)
        if scans and scans[-1].last_lsn < applied_lsn:  # the last file, even one holding no record
            last_lsn = scans[-1].last_lsn
            raise CorruptData(f"{self.path}: WAL ends at LSN {last_lsn}, before the state's checkpoint "
                              f"{applied_lsn} (files lost?)", path=self.path)
        return Recovery(scans, last_lsn, last_ts, torn, headers)

    @staticmethod
    def _scan(path: str, is_last: bool, start: int, applied_lsn: int) -> WalScan:
        """`scan_wal`, repairing a torn tail of the last file only if it holds no applied commit.

        Groups are applied to the state only once fsynced, so a group the state already holds
        was never the unsynced last one: damage there is damage to acknowledged commits,
        refused, not cut off (the writer would then log the next commit where they were)."""
        scan = scan_wal(path, start=start)
        if scan.torn is None or not is_last:
            return scan
        if scan.last_lsn < applied_lsn:
            raise CorruptData(f"the commit group at offset {scan.torn.offset} is damaged ({scan.torn.reason}) "
                              f"and holds commits through LSN {applied_lsn} that the state already holds: "
                              "not a torn write", path=path, offset=scan.torn.offset, lsn=scan.last_lsn + 1,
                              hint=MID_LOG_HINT)
        return scan_wal(path, repair=True, start=start)

    def _hinted_start(self, files: list[tuple[int, str]], applied_lsn: int,
                      hint: tuple[int, int]) -> tuple[int, int]:
        """(index of the file, offset) the recovery scan starts at: the checkpoint's hint when it
        holds (and a later read after `applied_lsn` starts there too), else (0, the first unit)."""
        for i, (first_lsn, path) in enumerate(files):
            if first_lsn != hint[0]:
                continue
            if i + 1 < len(files) and files[i + 1][0] <= applied_lsn:
                break  # a later file holds the checkpoint: the hint is stale
            offset = hinted_offset(path, first_lsn, applied_lsn, hint)
            if offset:
                self.resume = (applied_lsn + 1, path, offset)
                return i, offset
            break
        return 0, HEADER_SIZE

    @staticmethod
    def _header(path: str, first_lsn: int) -> WalHeader:
        try:
            with open(path, "rb") as fh:
                header = decode_header(fh.read(HEADER_SIZE), path)
        except SegmentsError as exc:
            raise to_corrupt(exc) from exc
        except OSError as exc:
            raise file_error(exc, path, "recover the WAL file") from exc
        if header.first_lsn != first_lsn:
            raise CorruptData(f"{path}: header says first LSN {header.first_lsn}", path=path)
        return header

    def read_after(self, lsn: int, upto: int, max_bytes: int = 64 << 20) -> Iterator[tuple[bytes, list[Span]]]:
        """Checked records with lsn < LSN <= upto, as (bytes, spans) chunks in order."""
        files = self.files()
        expected = lsn + 1
        for i, (first_lsn, path) in enumerate(files):
            next_first = files[i + 1][0] if i + 1 < len(files) else None
            if next_first is not None and next_first <= expected:
                continue
            if first_lsn > expected:
                if i:
                    _why_reading_stopped(files[i - 1][1], expected)
                raise CorruptData(f"{path}: LSNs {expected}..{first_lsn - 1} are missing from the WAL",
                                  path=path)
            offset = 0
            if self.resume is not None and self.resume[0] == expected and self.resume[1] == path:
                offset = self.resume[2]
            while expected <= upto:
                try:
                    chunk = read_wal_from(path, offset, expected, upto, max_bytes)
                except SegmentsError as exc:
                    raise to_corrupt(exc) from exc
                if not chunk.spans:
                    break
                expected = chunk.spans[-1].lsn + 1
                offset = chunk.next_offset
                self.resume = (expected, path, offset)
                yield chunk.data, chunk.spans
            if expected > upto:
                return
        if expected <= upto:
            if files:
                _why_reading_stopped(files[-1][1], expected)
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


def _why_reading_stopped(path: str, expected: int) -> None:
    """Raise what a full scan of `path` says stopped a read before LSN `expected` (the damage, its
    offset and LSN), if it says anything; the caller's error follows otherwise. A read only asks
    for durable LSNs, so stopping short of them is always damage, never a write in progress."""
    try:
        scan = scan_wal(path)
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc
    except OSError:
        return
    if scan.torn is not None and scan.last_lsn < expected:
        raise CorruptData(f"the WAL cannot be read past offset {scan.torn.offset} ({scan.torn.reason}); "
                          f"commits from LSN {scan.last_lsn + 1} on are not readable", path=path,
                          offset=scan.torn.offset, lsn=scan.last_lsn + 1, hint=MID_LOG_HINT)
