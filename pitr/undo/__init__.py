"""Undo a time range on a live store: plan from the archive, apply as one guarded commit."""

from __future__ import annotations

from pitr.undo.apply import UndoChange, UndoOptions, UndoResult, UndoTarget, apply_undo
from pitr.undo.plan import Reversal, UndoPlan, plan_undo
from pitr.undo.store_target import StoreTarget

__all__ = ["Reversal", "StoreTarget", "UndoChange", "UndoOptions", "UndoPlan", "UndoResult", "UndoTarget", "apply_undo",
           "plan_undo"]
