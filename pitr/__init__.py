"""pitr: point-in-time recovery, audit and continuous archiving for key-value stores.

The public API is re-exported here; implementation modules may change.
"""

from pitr import backup
from pitr.archiver import ArchiveOptions, Archiver, archiving
from pitr.errors import (
    CorruptData,
    DestinationExists,
    ForeignRepository,
    InvalidArgument,
    ObjectExists,
    ObjectNotFound,
    OutsideWindow,
    PitrError,
    SourceError,
    StorageError,
    StoreClosed,
    StoreLocked,
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
    "Commit",
    "CorruptData",
    "DestinationExists",
    "ForeignRepository",
    "InvalidArgument",
    "ObjectExists",
    "ObjectNotFound",
    "OutsideWindow",
    "PitrError",
    "Repository",
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
