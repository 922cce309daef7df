"""What the archiver is told (`ArchiveOptions`) and what it knows about each repository (`RepoProgress`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pitr.archiver.retry import Backoff
from pitr.archiver.sealing import SealedChunk
from pitr.errors import InvalidArgument
from pitr.repo.repository import Repository

if TYPE_CHECKING:  # cryptography is imported only by an archiver that signs checkpoints
    from pitr.archiver.checkpoints import CheckpointWriter


@dataclass(frozen=True, kw_only=True, slots=True)
class ArchiveOptions:
    """How the archiver batches, merges and reports."""

    interval: float = 1.0
    max_segment_bytes: int = 64 << 20
    max_segment_commits: int = 1 << 16  # bounds each sealing call and catalog transaction
    # Seal chunks of process_min_commits or more in a worker process (pitr.archiver.sealer), so that a
    # chunk's per-record objects never load the writers' process: its cyclic GC then walks them with the
    # GIL held, ~50 ms per chunk (docs/benchmarks.md, issue 12). The worker never imports the program's
    # main module, so every program may; False seals in a worker thread of this process.
    seal_in_process: bool = True
    process_min_commits: int = 4096
    merge_count: int = 32
    merge_small_bytes: int = 4 << 20
    merge_max_bytes: int = 64 << 20
    watermark_interval: float | None = None  # default: interval
    retry_initial: float = 1.0  # backoff after a failure: doubled per consecutive failure ...
    retry_max: float = 60.0  # ... up to this many seconds
    # Signed checkpoints after watermarks, into the repository and its witnesses (pitr/archiver/checkpoints.py)
    checkpoints: CheckpointWriter | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise InvalidArgument(f"interval must be positive seconds, got {self.interval}")
        if not (self.retry_initial > 0 and self.retry_max > 0):  # the first delay is the smaller of the two
            raise InvalidArgument(f"retry_initial and retry_max must be positive seconds, got "
                                  f"{self.retry_initial} and {self.retry_max}")
        if type(self.max_segment_commits) is not int or self.max_segment_commits < 1:
            raise InvalidArgument(f"max_segment_commits must be a positive number of commits, got "
                                  f"{self.max_segment_commits!r}")
        if type(self.process_min_commits) is not int or self.process_min_commits < 1:
            raise InvalidArgument(f"process_min_commits must be a positive number of commits, got "
                                  f"{self.process_min_commits!r}")
        if self.merge_count < 2:
            raise InvalidArgument(f"merge_count must be at least 2, got {self.merge_count}")


@dataclass(slots=True)
class RepoProgress:
    """What the archiver knows about one repository."""

    repo: Repository
    last_lsn: int
    chain_digest: bytes
    last_watermark: tuple[int, int] | None = None
    claimed: bytes = b""  # the identity document as read when the archiver started: must not change
    tail_object: str | None = None  # the file ending at last_lsn: must not disappear
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 60.0))
    watermark_written_at: float = 0.0
    segments_published: int = 0
    bytes_published: int = 0
    errors: int = 0
    last_error: str | None = None
    lag_samples_ns: list[int] = field(default_factory=list)
    pending: SealedChunk | None = None  # a chunk whose publish failed (it may have landed): retried as it is
