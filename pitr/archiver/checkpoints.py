"""The archiver's checkpoints: after a watermark is published, a signed checkpoint of the LSN it reached,
into the repository and every witness (pitr/repo/checkpoints.py, pitr/repo/witness.py).

At most one checkpoint per `interval` seconds of the archiver's clock (the first one of a run at once),
and only when the LSN advanced, so an idle archiver writes none and a busy one a bounded number. A
checkpoint that cannot be written fails the cycle like any other publish (the next watermark's checkpoint
tries again); rollback detection reaches back to the newest checkpoint a witness holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

import anyio

from pitr.repo.checkpoints import (
    REPOSITORY_PUBLIC_KEY,
    Checkpoint,
    SigningKey,
    checkpoint_name,
    identity_digest,
    publish_checkpoint,
    publish_public_key,
)
from pitr.repo.repository import Repository
from pitr.repo.witness import Witness

DEFAULT_INTERVAL = 60.0


class CheckpointWriter:
    """Signs checkpoints with `signing_key` and publishes each into the repository and every witness."""

    def __init__(self, signing_key: SigningKey, witnesses: Sequence[Witness] = (), *,
                 interval: float = DEFAULT_INTERVAL, clock: Callable[[], int] = time.time_ns) -> None:
        if not interval >= 0:
            raise ValueError(f"checkpoint interval must be 0 or more seconds, got {interval}")
        self.signing_key = signing_key
        self.witnesses = list(witnesses)
        self.interval = interval
        self.clock = clock
        self.written = 0
        self._last: dict[str, tuple[int, float]] = {}  # repository url -> (LSN, anyio time) of the last one
        self._keys_published: set[tuple[str, uuid.UUID]] = set()

    async def after_watermark(self, repo: Repository, identity_document: bytes, store_id: uuid.UUID, lsn: int,
                              chain_digest: bytes) -> None:
        """The hook the archiver calls once a watermark through `lsn` is published."""
        now = anyio.current_time()
        last = self._last.get(repo.url)
        if last is not None and (lsn <= last[0] or now - last[1] < self.interval):
            return
        signed = self.signing_key.sign(Checkpoint(store_id, lsn, self.clock(), chain_digest,
                                                  identity_digest(identity_document)))
        public = self.signing_key.public_key
        places = [(repo.storage, repo.url, REPOSITORY_PUBLIC_KEY, checkpoint_name(lsn))]
        places += [(w.storage, w.url, w.public_key_object(store_id), w.checkpoint_object(store_id, lsn))
                   for w in self.witnesses]
        for storage, url, key_name, name in places:
            where = url.rstrip("/") + "/"
            if (url, store_id) not in self._keys_published:
                await publish_public_key(storage, key_name, store_id, public, where + key_name)
                self._keys_published.add((url, store_id))
            await publish_checkpoint(storage, name, signed, where + name)
        self._last[repo.url] = (lsn, now)
        self.written += 1

