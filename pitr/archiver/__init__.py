"""Continuous archiving of a store's WAL into repositories.

The archiver reads durable commits from a `CommitSource` (a data directory,
or a store open in this process: `pitr.archiving`) and never imports the store.
"""

from pitr.archiver.archiver import Archiver
from pitr.archiver.options import ArchiveOptions
from pitr.archiver.sources import CommitSource, DirectorySource

__all__ = ["ArchiveOptions", "Archiver", "CommitSource", "DirectorySource"]
