"""Where things live inside a repository."""

from __future__ import annotations

import hashlib

SEGMENTS = "segments/"
SNAPSHOTS = "snapshots/"
IDENTITY = "pitr-repository"
WATERMARK = "watermark"
LOCAL_CATALOG_DIR = ".catalog"


def segment_object(name: str) -> str:
    return SEGMENTS + name


def snapshot_object(name: str) -> str:
    return SNAPSHOTS + name


def repo_key(url: str) -> str:
    """A short stable name for a repository URL (WAL archive markers, cache directories)."""
    return hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
