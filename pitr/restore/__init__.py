"""Restore to any moment."""

from pitr.restore.engine import RestoreResult
from pitr.restore.options import RestoreOptions, RestoreTarget
from pitr.restore.plan import RestorePlan, plan_restore
from pitr.restore.restore import restore

__all__ = ["RestoreOptions", "RestorePlan", "RestoreResult", "RestoreTarget", "plan_restore", "restore"]
