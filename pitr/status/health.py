"""How healthy a repository is, in the terms an operator alerts on (`pitr status`).

For each repository: the recovery point (how much would be lost now: the
present less the end of the newest recoverable window, which is the
watermark's known-complete time while the history is whole), the windows, the
newest usable snapshot's age, the newest signed checkpoint (its LSN and age),
the last verification, and (given the store's data directory) the archiver's
last outcome.

Three states, each worse than the one before; the command's exit code is the
worst over the repositories:

healthy    nothing below
attention  a threshold crossed (recovery point, snapshot age, time since a
           verification passed), the archiver failing, or a status record
           that cannot be read
broken     a hole, a damaged or unindexable file, a snapshot that does not
           match the log, nothing restorable, a last verification that failed,
           a watermark that cannot be trusted, a newest checkpoint past the
           watermark (a rollback, seen without a witness) or one that is damaged
           or not validly signed, or a repository that cannot be read
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from pitr.errors import CorruptData, PitrError
from pitr.repo.checkpoints import newest_checkpoint
from pitr.repo.repository import Repository
from pitr.sizefmt import format_rate
from pitr.status.records import ArchiverRecord, VerifyRecord, read_archiver_record, read_verify_record
from pitr.timefmt import format_time
from pitr.timeline import Base, Timeline, build_timeline

HEALTHY, ATTENTION, BROKEN = "healthy", "attention", "broken"
BACKLOG_FRESH_SECONDS = 60.0  # an archiver record older than this says nothing about the cap's cost now
EXIT_CODES = {HEALTHY: 0, ATTENTION: 1, BROKEN: 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class Thresholds:
    """Limits in seconds past which a repository needs attention (None: not checked)."""

    max_rpo: float | None = None
    max_snapshot_age: float | None = None
    max_unverified: float | None = None


@dataclass(slots=True)
class RepoHealth:
    """One repository's status at `now_ns`."""

    url: str
    now_ns: int
    store_id: str | None = None
    name: str | None = None
    timeline: Timeline | None = None
    watermark: tuple[int, int] | None = None  # (LSN, known-complete time)
    newest_snapshot: Base | None = None
    checkpoint: tuple[str, int, int] | None = None  # the newest signed checkpoint: (object, LSN, signed at)
    verify: VerifyRecord | None = None
    archiver: ArchiverRecord | None = None
    problems: list[str] = field(default_factory=list)  # what makes it broken
    warnings: list[str] = field(default_factory=list)  # what needs attention
    error_code: str | None = None  # the repository could not be read: the error's code

    @property
    def state(self) -> str:
        return BROKEN if self.problems else ATTENTION if self.warnings else HEALTHY

    @property
    def restorable_through_ns(self) -> int | None:
        """The end of the newest recoverable window."""
        if self.timeline is None or not self.timeline.windows:
            return None
        return max(w.end_ns for w in self.timeline.windows)

    @property
    def rpo_seconds(self) -> float | None:
        """What a loss now would cost: seconds from the newest restorable moment to now."""
        end = self.restorable_through_ns
        return None if end is None else max(0, self.now_ns - end) / 1e9

    @property
    def cap_cost_seconds(self) -> float | None:
        """What the upload cap adds to the recovery point, per the archiver's fresh record (None: no cap,
        no measurement, or a record too old to say)."""
        a = self.archiver
        if a is None or a.backlog is None or a.backlog.cap_bytes_per_s is None:
            return None
        if (self.now_ns - a.updated_ns) / 1e9 > BACKLOG_FRESH_SECONDS:
            return None
        return a.backlog.cap_cost_seconds

    @property
    def checkpoint_age_seconds(self) -> float | None:
        c = self.checkpoint
        return None if c is None else max(0, self.now_ns - c[2]) / 1e9

    @property
    def snapshot_age_seconds(self) -> float | None:
        snap = self.newest_snapshot
        return None if snap is None else max(0, self.now_ns - snap.ts_ns) / 1e9


def worst(healths: list[RepoHealth]) -> str:
    states = {h.state for h in healths}
    return next((s for s in (BROKEN, ATTENTION) if s in states), HEALTHY)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def judge_timeline(health: RepoHealth, tl: Timeline) -> None:
    for h in tl.holes:
        health.problems.append(f"hole LSN {h.first_lsn}..{h.last_lsn}: {h.reason}")
    for c in tl.damaged:
        if c.kind != "segment":  # a damaged segment is named by its hole
            health.problems.append(f"{c.name} is {'not indexable' if c.status == 'unindexed' else 'damaged'}: "
                                   f"{c.detail}")
    for name in tl.unbound_snapshots:
        health.problems.append(f"snapshot {name} does not match the log")
    if not tl.windows:
        health.problems.append("nothing is restorable")


def judge_thresholds(health: RepoHealth, limits: Thresholds) -> None:
    rpo = health.rpo_seconds
    if limits.max_rpo is not None and rpo is not None and rpo > limits.max_rpo:
        health.warnings.append(f"recovery point {_age(rpo)} is over --max-rpo {_age(limits.max_rpo)} "
                               f"(restorable through {format_time(health.restorable_through_ns or 0)})"
                               + _cap_share(health, rpo, limits.max_rpo))
    if limits.max_snapshot_age is not None:
        age = health.snapshot_age_seconds
        if age is None:
            health.warnings.append("no usable snapshot (--max-snapshot-age is set)")
        elif age > limits.max_snapshot_age:
            health.warnings.append(f"newest snapshot is {_age(age)} old, over --max-snapshot-age "
                                   f"{_age(limits.max_snapshot_age)}")
    if limits.max_unverified is not None:
        last_ok = None if health.verify is None else health.verify.last_ok_ns
        if last_ok is None:
            health.warnings.append("no full verification has passed (--max-unverified is set; run pitr verify)")
        elif (health.now_ns - last_ok) / 1e9 > limits.max_unverified:
            health.warnings.append(f"last passing verification was {_age((health.now_ns - last_ok) / 1e9)} ago, "
                                   f"over --max-unverified {_age(limits.max_unverified)}")


def _cap_share(health: RepoHealth, rpo: float, max_rpo: float) -> str:
    """What the upload cap has to do with a recovery point over `max_rpo` ("" when nothing)."""
    cost = health.cap_cost_seconds
    backlog = None if health.archiver is None else health.archiver.backlog
    if cost is None or backlog is None or backlog.cap_bytes_per_s is None or cost <= 0:
        return ""
    waiting = f"{backlog.bytes or 0:,} bytes waiting at the upload cap of {format_rate(backlog.cap_bytes_per_s)}"
    if rpo - cost <= max_rpo:
        return f"; crossed because of the upload cap: {waiting} add {_age(cost)} (raise --limit-upload)"
    return f"; the upload cap adds {_age(cost)} of it ({waiting})"


def judge_records(health: RepoHealth, *, with_archiver: bool) -> None:
    v = health.verify
    if v is not None and not v.ok:
        health.problems.append(f"the last verification ({v.mode}, {format_time(v.finished_ns)}) failed: "
                               f"{v.summary}")
    a = health.archiver
    if a is not None and a.failing:
        last = a.recent_errors[-1].message if a.recent_errors else "unknown error"
        health.warnings.append(f"the archiver is failing ({a.errors} failed attempts since "
                               f"{format_time(a.started_ns)}): {last}")
    elif a is None and with_archiver:
        health.warnings.append("no archiver status for this repository in the data directory "
                               "(no `pitr archive --follow` has run for it there)")


async def assess(repo: Repository, now_ns: int, limits: Thresholds, data_dir: str | None) -> RepoHealth:
    """The health of `repo` at `now_ns`; the records are read from `repo`'s work directory and `data_dir`.

    A repository that cannot be read raises; `assess_or_broken` turns that into a broken status.
    """
    health = RepoHealth(repo.url, now_ns)
    ident = await repo.require_identity()
    health.store_id, health.name = str(ident.store_id), ident.name
    # before the watermark: the archiver publishes a watermark before the checkpoint that follows it
    try:
        newest = await newest_checkpoint(repo.storage, ident.store_id, repo.url)
    except PitrError as exc:
        newest = None
        health.problems.append(f"the newest checkpoint cannot be trusted: {exc}")
    await repo.sync()
    try:
        await repo.read_watermark(now_ns=now_ns)  # refuses a known-complete time in the future
    except CorruptData as exc:
        health.problems.append(str(exc))

    def read_catalog() -> tuple[Timeline, tuple[int, int] | None]:
        return build_timeline(repo.catalog, ident), repo.catalog.watermark()

    tl, health.watermark = await anyio.to_thread.run_sync(read_catalog)
    health.timeline = tl
    health.newest_snapshot = max((b for b in tl.bases if b.snapshot is not None), key=lambda b: b.ts_ns,
                                 default=None)
    judge_timeline(health, tl)
    if newest is not None:
        name, c = newest
        health.checkpoint = (name, c.lsn, c.ts_ns)
        end = ident.first_lsn - 1 if health.watermark is None else health.watermark[0]
        if c.lsn > end:
            health.problems.append(
                f"LSNs {end + 1}..{c.lsn} are missing: {name} says the history was signed through LSN {c.lsn} "
                f"at {format_time(c.ts_ns)}, but the watermark ends at LSN {end}: rolled back, or the newest "
                "segments and watermarks were removed (run `pitr verify --witness`; restore from another copy)")
    try:
        health.verify = await anyio.to_thread.run_sync(read_verify_record, repo.cache_dir)
    except PitrError as exc:
        health.warnings.append(f"the verify record cannot be read: {exc}")
    if data_dir is not None:
        try:
            health.archiver = await anyio.to_thread.run_sync(read_archiver_record, data_dir, repo.url)
        except PitrError as exc:
            health.warnings.append(f"the archiver status record cannot be read: {exc}")
    judge_records(health, with_archiver=data_dir is not None)
    judge_thresholds(health, limits)
    return health
