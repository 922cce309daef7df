"""The restore receipt: the built state must carry the state digest its build predicted, or nothing is published.

The prediction is the running digest the state database keeps in its
checkpoint row (`pitr.datadir.state`): it starts from the base snapshot's own
state digest (checked as soon as the base is loaded as it is) and takes each
replayed change's old row out and new row in, in the same transaction as the
write. The receipt recomputes the digest from the rows the build left, reading
them back through their checksums; the two must agree. The restore prints it
(`state_digest`), and `pitr verify --state DIR` recomputes it later.
"""

from __future__ import annotations

from pitr.datadir.state import StateDB
from pitr.errors import CorruptData

RECEIPT_HINT = ("nothing was published; run the restore again, and if it fails the same way, "
                "run `pitr verify` on the repository and report the restore as a bug")


def check_base_digest(state: StateDB, base_digest: bytes, base_name: str) -> None:
    """Refuse unless the state, holding the base snapshot loaded as it is, has the base's digest."""
    kept = state.stored_checkpoint()
    if kept.digest != base_digest:
        raise CorruptData(f"restore receipt: the base {base_name} loaded gives state digest {kept.digest.hex()} "
                          f"over {kept.count} keys, but the snapshot's footer says {base_digest.hex()}",
                          path=state.path, hint=RECEIPT_HINT)


def receipt_digest(state: StateDB) -> bytes:
    """The built state's digest, recomputed from its rows; refuses unless it is the predicted one."""
    digest, count = state.state_digest(None)
    kept = state.stored_checkpoint()
    if (digest, count) != (kept.digest, kept.count):
        raise CorruptData(f"restore receipt: the built state's rows give state digest {digest.hex()} over {count} "
                          f"keys, but the build predicted {kept.digest.hex()} over {kept.count}",
                          path=state.path, hint=RECEIPT_HINT)
    return digest
