"""pitr: point-in-time recovery, audit and continuous archiving for key-value stores.

The public API is re-exported here; implementation modules may change.

Names are imported on first use (PEP 562), so `import pitr` (and so every
`pitr` command's start) costs only what it uses: the event loop, LMDB,
zstandard, boto3 and httpx come in with the first name that needs them.
"""

import importlib as _importlib
import sys as _sys
import types as _types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pitr import backup
    from pitr.archiver import ArchiveOptions, Archiver
    from pitr.archiving import archiving
    from pitr.errors import (
        CatalogDamaged,
        CorruptData,
        DestinationExists,
        DiskFull,
        FileError,
        ForeignRepository,
        Gap,
        HistoryGap,
        InvalidArgument,
        NotARepository,
        ObjectExists,
        ObjectNotFound,
        OutsideWindow,
        PitrError,
        RepositoryLost,
        SourceError,
        StorageError,
        StoreClosed,
        StoreLocked,
        UnsafeDestination,
        Window,
    )
    from pitr.repo.repository import Repository, open_repository
    from pitr.restore import RestoreOptions, RestorePlan, RestoreResult, RestoreTarget, plan_restore, restore
    from pitr.retention import plan_cleanup, run_cleanup
    from pitr.snapshots.schedule import SnapshotSchedule
    from pitr.snapshots.take import take_snapshot
    from pitr.store import Batch, Commit, Store
    from pitr.timefmt import format_time, parse_time
    from pitr.timeline import Timeline, build_timeline
    from pitr.verify import VerifyReport, verify_repository

del TYPE_CHECKING  # the package's namespace holds its exports, its submodules and nothing else public

__version__ = "0.1.0"

# name -> the module that defines it ("pitr" for a submodule exported as such)
_LAZY = {
    "backup": "pitr",
    "ArchiveOptions": "pitr.archiver",
    "Archiver": "pitr.archiver",
    "archiving": "pitr.archiving",
    "CatalogDamaged": "pitr.errors",
    "CorruptData": "pitr.errors",
    "DestinationExists": "pitr.errors",
    "DiskFull": "pitr.errors",
    "FileError": "pitr.errors",
    "ForeignRepository": "pitr.errors",
    "Gap": "pitr.errors",
    "HistoryGap": "pitr.errors",
    "InvalidArgument": "pitr.errors",
    "NotARepository": "pitr.errors",
    "ObjectExists": "pitr.errors",
    "ObjectNotFound": "pitr.errors",
    "OutsideWindow": "pitr.errors",
    "PitrError": "pitr.errors",
    "RepositoryLost": "pitr.errors",
    "SourceError": "pitr.errors",
    "StorageError": "pitr.errors",
    "StoreClosed": "pitr.errors",
    "StoreLocked": "pitr.errors",
    "UnsafeDestination": "pitr.errors",
    "Window": "pitr.errors",
    "Repository": "pitr.repo.repository",
    "open_repository": "pitr.repo.repository",
    "RestoreOptions": "pitr.restore",
    "RestorePlan": "pitr.restore",
    "RestoreResult": "pitr.restore",
    "RestoreTarget": "pitr.restore",
    "plan_restore": "pitr.restore",
    "restore": "pitr.restore",
    "plan_cleanup": "pitr.retention",
    "run_cleanup": "pitr.retention",
    "SnapshotSchedule": "pitr.snapshots.schedule",
    "take_snapshot": "pitr.snapshots.take",
    "Batch": "pitr.store",
    "Commit": "pitr.store",
    "Store": "pitr.store",
    "format_time": "pitr.timefmt",
    "parse_time": "pitr.timefmt",
    "Timeline": "pitr.timeline",
    "build_timeline": "pitr.timeline",
    "VerifyReport": "pitr.verify",
    "verify_repository": "pitr.verify",
}

__all__ = [
    "ArchiveOptions",
    "Archiver",
    "Batch",
    "CatalogDamaged",
    "Commit",
    "CorruptData",
    "DestinationExists",
    "DiskFull",
    "FileError",
    "ForeignRepository",
    "Gap",
    "HistoryGap",
    "InvalidArgument",
    "NotARepository",
    "ObjectExists",
    "ObjectNotFound",
    "OutsideWindow",
    "PitrError",
    "Repository",
    "RepositoryLost",
    "RestoreOptions",
    "RestorePlan",
    "RestoreResult",
    "RestoreTarget",
    "SnapshotSchedule",
    "SourceError",
    "StorageError",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "Timeline",
    "UnsafeDestination",
    "VerifyReport",
    "Window",
    "__version__",
    "archiving",
    "backup",
    "build_timeline",
    "format_time",
    "open_repository",
    "parse_time",
    "plan_cleanup",
    "plan_restore",
    "restore",
    "run_cleanup",
    "take_snapshot",
    "verify_repository",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pitr' has no attribute {name!r}")
    value = _importlib.import_module(f"pitr.{name}") if module == "pitr" else getattr(
        _importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(_types.ModuleType):
    """`pitr` itself: a submodule named like an exported function (pitr.restore, pitr.archiving) never
    replaces it.

    Importing a submodule binds it on its parent package; eagerly, `from pitr.restore import restore` came
    after and won. Lazily, the submodule may be imported first (by any `pitr.restore.x` import), so the
    binding is refused here and `pitr.restore` stays the function, as it always was.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, _types.ModuleType) and _LAZY.get(name, "pitr") != "pitr":
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
