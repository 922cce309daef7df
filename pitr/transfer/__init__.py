"""Moving history between repositories: `copy_history` (pitr copy) and `repair_repository` (pitr repair)."""

from pitr.transfer.copy import CopyOptions, CopyReport, copy_history
from pitr.transfer.files import refuse_same_repository
from pitr.transfer.repair import DAMAGED_DIR, RepairReport, repair_repository

__all__ = ["DAMAGED_DIR", "CopyOptions", "CopyReport", "RepairReport", "copy_history", "refuse_same_repository",
           "repair_repository"]
