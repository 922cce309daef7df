"""Verification of repositories: files, chains, bindings and replays."""

from pitr.verify.checks import Finding
from pitr.verify.repository import MODES, VerifyReport, verify_repository

__all__ = ["MODES", "Finding", "VerifyReport", "verify_repository"]
