"""The two local records `pitr status` reads: the last verification, and the archiver's last outcome.

Both are repository documents (`pitr/repo/documents.py`: magic, version, JSON
body, CRC-32C) written atomically (temporary file, fsync, rename) as 0600
files, and kept out of the repository's storage: a repository is published
once and never rewritten (it is to become write-once), while these change
every run. Layout and fields: docs/format.md, "Status records".

- `VerifyRecord` (`PITRVFY 1`): `<repository work dir>/verify-status`, written
  by `pitr verify` after each whole-repository run. The work directory is the
  repository's local side (`REPO/.work` for a directory repository, the cache
  directory's folder for a remote one), beside the catalog.
- `ArchiverRecord` (`PITRARS 1`): `DATA/archiver-status/<repo key>`, written
  by a running `pitr archive --follow` for each of its repositories.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, BinaryIO

import anyio

from pitr.errors import CorruptData, file_error
from pitr.repo import layout
from pitr.repo.documents import MAX_DOCUMENT, Fields, decode_document, encode_document
from pitr.storage.ratelimit import recovery_point_cost
from segments.fsutil import makedirs_private, publish_atomically

VERIFY_MAGIC = "PITRVFY"
ARCHIVER_MAGIC = "PITRARS"
VERSION = 1
VERIFY_RECORD = "verify-status"
ARCHIVER_DIR = "archiver-status"
MAX_ERRORS = 5  # recent errors kept in an archiver record
MAX_MESSAGE = 1000  # characters of an error message kept (a document's strings are at most 1024)
MODES = ("quick", "full", "replay")

if TYPE_CHECKING:
    from pitr.repo.repository import Repository
    from pitr.verify import VerifyReport


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True, slots=True)
class VerifyRecord:
    """The outcome of the last `pitr verify` of a whole repository, and when one last passed."""

    repo: str
    mode: str
    ok: bool
    finished_ns: int
    files_checked: int
    problems: int  # findings plus holes
    summary: str  # the first problem, or "" when ok
    last_ok_ns: int | None  # the newest full or replay verification that passed (quick ones do not count)

    def encode(self) -> bytes:
        return encode_document(VERIFY_MAGIC, VERSION, {
            "repo": self.repo, "mode": self.mode, "ok": self.ok, "finished_ns": self.finished_ns,
            "files_checked": self.files_checked, "problems": self.problems, "summary": self.summary,
            "last_ok_ns": self.last_ok_ns})

    @classmethod
    def decode(cls, data: bytes, name: str) -> VerifyRecord:
        fields = Fields(decode_document(VERIFY_MAGIC, VERSION, data, name), name, "verify record")
        mode = fields.text("mode")
        if mode not in MODES:
            fields.bad("mode", " or ".join(MODES))
        ok = fields.doc.get("ok")
        if not isinstance(ok, bool):
            fields.bad("ok", "true or false")
        last_ok = None if fields.doc.get("last_ok_ns") is None else fields.integer("last_ok_ns")
        return cls(fields.text("repo"), mode, ok, fields.integer("finished_ns"), fields.integer("files_checked"),
                   fields.integer("problems"), fields.text("summary"), last_ok)


@dataclass(frozen=True, slots=True)
class UploadBacklog:
    """What one repository's archiver had still to upload, and the upload cap it ran under."""

    commits: int  # durable commits not yet in the repository
    bytes: int | None  # their segment bytes, estimated from the segments this process published (None: none yet)
    cap_bytes_per_s: int | None  # the upload cap on this repository (None: no cap; a directory is never capped)
    rate_bytes_per_s: int | None  # the upload rate measured over the last minute (None without a cap)

    @property
    def cap_cost_seconds(self) -> float:
        """Seconds the cap adds to the recovery point while this backlog waits (0 without a cap or estimate)."""
        return recovery_point_cost(self.bytes or 0, self.cap_bytes_per_s)


@dataclass(frozen=True, slots=True)
class RecentError:
    at_ns: int
    message: str


@dataclass(frozen=True, slots=True)
class ArchiverRecord:
    """What a running archiver last did for one repository."""

    repo: str
    pid: int
    started_ns: int
    updated_ns: int
    archived_lsn: int
    last_success_ns: int | None
    errors: int  # failed attempts since the archiver started
    failing: bool  # the last attempt failed
    recent_errors: tuple[RecentError, ...] = field(default_factory=tuple)  # newest last, at most MAX_ERRORS
    backlog: UploadBacklog | None = None  # what waited to be uploaded when the record was written

    def encode(self) -> bytes:
        body: dict[str, object] = {
            "repo": self.repo, "pid": self.pid, "started_ns": self.started_ns, "updated_ns": self.updated_ns,
            "archived_lsn": self.archived_lsn, "last_success_ns": self.last_success_ns, "errors": self.errors,
            "failing": self.failing,
            "recent_errors": [{"at_ns": e.at_ns, "message": e.message} for e in self.recent_errors]}
        if self.backlog is not None:  # absent from records of archivers that did not measure it
            b = self.backlog
            body.update({"backlog_commits": b.commits, "backlog_bytes": b.bytes, "upload_cap": b.cap_bytes_per_s,
                         "upload_rate": b.rate_bytes_per_s})
        return encode_document(ARCHIVER_MAGIC, VERSION, body)

    @classmethod
    def decode(cls, data: bytes, name: str) -> ArchiverRecord:
        fields = Fields(decode_document(ARCHIVER_MAGIC, VERSION, data, name), name, "archiver record")
        failing = fields.doc.get("failing")
        if not isinstance(failing, bool):
            fields.bad("failing", "true or false")
        raw = fields.doc.get("recent_errors")
        if not isinstance(raw, list) or len(raw) > MAX_ERRORS or not all(isinstance(e, dict) for e in raw):
            fields.bad("recent_errors", f"a list of at most {MAX_ERRORS} objects")
        recent = []
        for entry in raw:
            item = Fields(entry, name, "archiver record", "recent_errors.")
            recent.append(RecentError(item.integer("at_ns"), item.text("message")))
        success = None if fields.doc.get("last_success_ns") is None else fields.integer("last_success_ns")
        return cls(fields.text("repo"), fields.integer("pid"), fields.integer("started_ns"),
                   fields.integer("updated_ns"), fields.integer("archived_lsn"), success, fields.integer("errors"),
                   failing, tuple(recent), _backlog(fields))

    def failed(self, message: str, now_ns: int) -> ArchiverRecord:
        recent = (*self.recent_errors, RecentError(now_ns, _clip(message)))[-MAX_ERRORS:]
        return replace(self, updated_ns=now_ns, errors=self.errors + 1, failing=True, recent_errors=recent)

    def archived(self, lsn: int, now_ns: int) -> ArchiverRecord:
        return replace(self, updated_ns=now_ns, archived_lsn=lsn, last_success_ns=now_ns, failing=False)

    def measured(self, backlog: UploadBacklog, now_ns: int) -> ArchiverRecord:
        return replace(self, updated_ns=now_ns, backlog=backlog)


def _backlog(fields: Fields) -> UploadBacklog | None:
    if "backlog_commits" not in fields.doc:
        return None

    def optional(key: str, low: int = 0) -> int | None:
        return None if fields.doc.get(key) is None else fields.integer(key, low)

    cap = optional("upload_cap", 1)
    rate = optional("upload_rate")
    if cap is None and rate is not None:
        fields.bad("upload_rate", "null without an upload_cap")
    return UploadBacklog(fields.integer("backlog_commits"), optional("backlog_bytes"), cap, rate)


def verify_record_path(work_dir: str) -> str:
    return os.path.join(work_dir, VERIFY_RECORD)


def archiver_record_path(data_dir: str, repo_url: str) -> str:
    return os.path.join(data_dir, ARCHIVER_DIR, layout.repo_key(repo_url))


def _write(path: str, data: bytes, what: str) -> None:
    def write(fh: BinaryIO) -> None:
        fh.write(data)

    try:
        makedirs_private(os.path.dirname(path))
        publish_atomically(path, write, overwrite=True)
    except OSError as exc:
        raise file_error(exc, path, f"write the {what}") from exc


def _read(path: str, what: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT + 1)  # more than a document may hold is refused by decode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, f"read the {what}") from exc
    return data


def write_verify_record(work_dir: str, record: VerifyRecord) -> None:
    """Publish `record` (blocking: call in a worker thread)."""
    _write(verify_record_path(work_dir), record.encode(), "verify record")


def read_verify_record(work_dir: str) -> VerifyRecord | None:
    """The last verification's record, None when the repository was never verified from here;
    `CorruptData` naming the file when it is damaged."""
    path = verify_record_path(work_dir)
    data = _read(path, "verify record")
    return None if data is None else VerifyRecord.decode(data, path)


def previous_ok_ns(work_dir: str) -> int | None:
    """When a verification last passed, per the record there; a damaged record counts as none
    (the new record replaces it, and the verification it describes is the one that matters)."""
    try:
        record = read_verify_record(work_dir)
    except CorruptData:
        return None
    return None if record is None else record.last_ok_ns


def write_archiver_record(data_dir: str, record: ArchiverRecord) -> None:
    """Publish `record` (blocking: call in a worker thread)."""
    _write(archiver_record_path(data_dir, record.repo), record.encode(), "archiver status record")


def read_archiver_record(data_dir: str, repo_url: str) -> ArchiverRecord | None:
    """The archiver's record for `repo_url` in `data_dir`, None when no follower ever wrote one."""
    path = archiver_record_path(data_dir, repo_url)
    data = _read(path, "archiver status record")
    return None if data is None else ArchiverRecord.decode(data, path)


def verify_record_of(report: VerifyReport, finished_ns: int, previous_ok: int | None) -> VerifyRecord:
    """The record of a whole-repository verification that ended at `finished_ns`."""
    problems = [f"{f.file}: {f.message}" for f in report.findings]
    problems += [f"hole LSN {h.first_lsn}..{h.last_lsn}: {h.reason}" for h in report.holes]
    if report.catalog_damaged and not problems:
        problems.append("the catalog is damaged (pitr reindex)")
    if not report.ok and not problems:
        problems.append("nothing is restorable")
    last_ok = finished_ns if report.ok and report.mode != "quick" else previous_ok
    return VerifyRecord(report.url, report.mode, report.ok, finished_ns, report.files_checked, len(problems),
                        _clip(problems[0]) if problems else "", last_ok)


async def record_verification(repo: Repository, report: VerifyReport, clock: Callable[[], int] = time.time_ns) -> None:
    """Keep `report`'s outcome where `pitr status` reads it (a run over named files is not recorded:
    it makes no claim about the repository)."""
    if report.scope != "repository":
        return
    now = clock()

    def write() -> None:
        write_verify_record(repo.cache_dir, verify_record_of(report, now, previous_ok_ns(repo.cache_dir)))

    await anyio.to_thread.run_sync(write)
