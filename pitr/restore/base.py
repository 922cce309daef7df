"""The base snapshot of a restore, checked as the build reads it, and the fall-back when it is damaged.

A verified restore from one repository does not read its base twice (once to verify it whole,
once to build): `open_base` checks only its header, footer and index (and a sealed snapshot's key
table), and the build takes the entries from `segments.snapshot_check.checked_blocks`, which
makes every check of full verification in the one pass that reads and decompresses each block,
and the whole-file checks (counts, state digest, file digest) after the last block, before the
build goes on. Damage found there raises `BaseDamaged`; the build's directory is never published,
and `restore` falls back to the next older base as it does for a base found damaged before the
build (`next_base`), or refuses when there is none or the base was chosen with --base.

With several repositories a base is still verified whole before it is chosen (a damaged copy is
passed over for another copy before anything is read), and a dry run verifies it whole too (it
builds nothing that would check it).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing

from pitr.errors import CorruptData, to_corrupt
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore.plan import RestorePlan, SkippedBase, with_base
from pitr.restore.prefetch import prefetched
from segments import SegmentsError
from segments.fold import Change
from segments.snapshot import SnapshotFooter, SnapshotReader
from segments.snapshot_check import checked_blocks

Say = Callable[[str], None]


class BaseDamaged(CorruptData):
    """The base snapshot failed a check as the build read it (nothing built on it is published)."""


class BaseSnapshot:
    """A restore's base: its reader, and whether its blocks are checked as they are read (`check`)."""

    def __init__(self, reader: SnapshotReader, *, check: bool) -> None:
        self.reader = reader
        self.check = check

    @property
    def footer(self) -> SnapshotFooter:
        return self.reader.footer

    def blocks(self) -> Generator[list[tuple[bytes, Change]], None, None]:
        """The entries as (key, change), one sorted list per block, decompressed a few blocks ahead in
        a thread. With `check`, each block is checked before its entries are given, and the whole file
        after the last: a failure raises `BaseDamaged`, and nothing read may be published."""
        reader = self.reader
        if not self.check:
            with prefetched(iter(map(reader.read_block, range(len(reader.blocks))))) as raws:
                for i, raw in enumerate(raws):
                    yield reader.block_changes(i, raw)
            return
        try:
            with closing(checked_blocks(reader, read_ahead=prefetched)) as blocks:
                yield from blocks
        except SegmentsError as exc:
            damage = to_corrupt(exc, reader.source.name)
            raise BaseDamaged(damage.message, path=damage.path, offset=damage.offset, lsn=damage.lsn,
                              hint=damage.hint) from exc


def base_checked_as_read(verify: bool, repo_count: int, dry_run: bool) -> bool:
    """Whether a restore checks its base as the build reads it rather than whole before: verified,
    from one repository (several: a damaged copy is passed over before anything is read), and
    building (a dry run builds nothing that would check it)."""
    return verify and repo_count == 1 and not dry_run


async def next_base(repo: Repository, plan: RestorePlan, damage: CorruptData, skipped: list[SkippedBase], *,
                    explicit: bool, say: Say | None) -> RestorePlan:
    """The plan from the next older base after `plan`'s base was found damaged (`damage`), with the
    damaged base added to `skipped`; CorruptData naming every base tried when there is none (or the
    base was chosen explicitly, with --base)."""
    assert plan.snapshot is not None
    name = plan.snapshot.name
    skipped.append(SkippedBase(name, plan.base.lsn, str(damage)))
    if explicit or not plan.alternatives:
        tried = "; ".join(f"{s.snapshot} (LSN {s.lsn}): {s.reason}" for s in skipped)
        why = "the base chosen with --base is damaged" if explicit else "no base at or before the target can be read"
        raise CorruptData(f"{why}: {tried}", path=layout.snapshot_object(name),
                          hint="run pitr verify; pick another base with --base, or restore to "
                               "another target inside a window verify prints") from damage
    older = plan.alternatives[0]
    if say:
        say(f"base {name} is damaged ({damage}); falling back to "
            f"{older.snapshot or 'the start of the history'} (LSN {older.lsn})")
    return await with_base(repo, plan, older)
