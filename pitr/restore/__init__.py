"""Restore to any moment."""

from pitr.restore.destination import Replacement
from pitr.restore.engine import RestoreResult
from pitr.restore.options import KeySelection, RestoreOptions, RestoreTarget
from pitr.restore.plan import RestorePlan, SkippedBase, plan_restore
from pitr.restore.restore import restore

__all__ = ["KeySelection", "Replacement", "RestoreOptions", "RestorePlan", "RestoreResult", "RestoreTarget", "SkippedBase",
           "plan_restore", "restore"]
