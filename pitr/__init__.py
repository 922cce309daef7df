"""pitr: point-in-time recovery, audit and continuous archiving for key-value stores.

The public API is re-exported here; implementation modules may change.
"""

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

__version__ = "0.1.0"

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
