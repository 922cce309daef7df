"""Restore targets and options: typed, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from pitr.errors import InvalidArgument

MAX_TS = (1 << 63) - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class RestoreTarget:
    """Exactly one of: a time (ns, inclusive unless `exclusive`), an LSN (inclusive), or the latest point."""

    time_ns: int | None = None
    lsn: int | None = None
    latest: bool = False
    exclusive: bool = False

    def __post_init__(self) -> None:
        given = sum((self.time_ns is not None, self.lsn is not None, self.latest))
        if given != 1:
            raise InvalidArgument("give exactly one restore target: a time, an LSN, or latest")
        if self.exclusive and self.time_ns is None:
            raise InvalidArgument("exclusive applies only to a time target")
        if self.lsn is not None and self.lsn < 0:
            raise InvalidArgument(f"LSN must not be negative, got {self.lsn}")

    def describe(self) -> str:
        from pitr.timefmt import format_time

        if self.latest:
            return "latest"
        if self.lsn is not None:
            return f"LSN {self.lsn}"
        assert self.time_ns is not None
        return f"{'before' if self.exclusive else 'at'} {format_time(self.time_ns)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RestoreOptions:
    """How to restore: where, and whether to verify, replace or only plan.

    `force` replaces a non-empty destination that is a pitr store (never one a
    live writer holds); `replace_foreign` also lets it replace a non-empty
    directory that is not one. `base` names the snapshot to start from (by
    default the newest valid one at or before the target). `pause_gc` pauses Python's cyclic
    garbage collector for the whole process while the state is built (faster on millions of
    keys); only a program that owns its process should ask for it, as the command line does.
    """

    target: RestoreTarget
    dest: str
    force: bool = False
    replace_foreign: bool = False
    verify: bool = True
    dry_run: bool = False
    name: str | None = None
    base: str | None = None
    pause_gc: bool = False

    def __post_init__(self) -> None:
        if self.replace_foreign and not self.force:
            raise InvalidArgument("replacing a directory that is not a pitr store needs force as well")
        if self.base is not None and not self.base.strip():
            raise InvalidArgument("base must name a snapshot")
