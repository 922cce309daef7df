"""Restore targets and options: typed, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pitr.errors import InvalidArgument

if TYPE_CHECKING:
    from pitr.repo.witness import Witness

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
class KeySelection:
    """The keys a partial restore builds: those under any of `prefixes`, and each of `keys`.

    Each selected key lands as `add_prefix + key[len(strip_prefix):]`; every prefix and key
    must start with `strip_prefix`, so the mapping is one to one and no key is left unmapped.
    """

    prefixes: tuple[bytes, ...] = ()
    keys: tuple[bytes, ...] = ()
    strip_prefix: bytes = b""
    add_prefix: bytes = b""

    def __post_init__(self) -> None:
        if not self.prefixes and not self.keys:
            raise InvalidArgument("a key selection needs at least one prefix or key")
        if any(not key for key in self.keys):
            raise InvalidArgument("a selected key must not be empty")
        for item in (*self.prefixes, *self.keys):
            if not item.startswith(self.strip_prefix):
                raise InvalidArgument(f"{item!r} does not start with the prefix to strip {self.strip_prefix!r}; "
                                      "every --prefix and --key must start with --strip-prefix")
        if not self.add_prefix and any(key == self.strip_prefix for key in self.keys):
            raise InvalidArgument(f"stripping {self.strip_prefix!r} from the key {self.strip_prefix!r} leaves an "
                                  "empty key; give --add-prefix")

    def selects(self, key: bytes) -> bool:
        """Whether `key` is one of the selected keys."""
        return key in self.keys or any(key.startswith(p) for p in self.prefixes)

    def landed(self, key: bytes) -> bytes:
        """The name `key` is restored under."""
        return self.add_prefix + key[len(self.strip_prefix):]

    def describe(self) -> str:
        parts = [f"prefix {p!r}" for p in self.prefixes] + [f"key {k!r}" for k in self.keys]
        moved = f" (renamed {self.strip_prefix!r} -> {self.add_prefix!r})" \
            if self.strip_prefix or self.add_prefix else ""
        return ", ".join(parts) + moved


@dataclass(frozen=True, kw_only=True, slots=True)
class RestoreOptions:
    """How to restore: where, and whether to verify, replace or only plan.

    `force` replaces a non-empty destination that is a pitr store (never one a
    live writer holds); `replace_foreign` also lets it replace a non-empty
    directory that is not one. `base` names the snapshot to start from (by
    default the newest valid one at or before the target). `pause_gc` pauses Python's cyclic
    garbage collector for the whole process while the state is built (faster on millions of
    keys); only a program that owns its process should ask for it, as the command line does.
    `witness` (a directory, an `s3://` URL or an opened `pitr.repo.witness.Witness`) makes the restore
    first check every repository against that witness's signed checkpoints and refuse (`CorruptData`),
    before anything is planned or built, one that was rolled back, rewritten or given another identity
    (`pitr restore --witness`); `witness_s3_endpoint` is the S3 endpoint of a witness URL (default: the
    repository's).
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
    selection: KeySelection | None = None  # restore only these keys (`pitr.restore.prefix`)
    witness: str | Witness | None = None
    witness_s3_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.selection is not None and self.base is not None:
            raise InvalidArgument("a restore of selected keys reads the base the plan chooses; drop --base")
        if self.replace_foreign and not self.force:
            raise InvalidArgument("replacing a directory that is not a pitr store needs force as well")
        if self.base is not None and not self.base.strip():
            raise InvalidArgument("base must name a snapshot")
        if isinstance(self.witness, str) and not self.witness.strip():
            raise InvalidArgument("witness must name a directory or an s3:// URL (or be None)")
