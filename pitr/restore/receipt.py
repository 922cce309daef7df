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

from typing import NoReturn

from pitr.datadir.build import OUT_OF_ORDER, ROW_DAMAGED, ReadBack, SortedRows, read_back_rows
from pitr.datadir.entries import DIGEST_MOD
from pitr.datadir.state import StateDB
from pitr.datadir.view import show_key
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
    """The built state's digest, recomputed from its rows (each read back through its checks and
    hashed in one compiled pass, `read_back_rows`); refuses unless it is the predicted one."""
    found = read_back_rows(state, None)
    if found.bad >= 0:
        _refuse_row(state, found, None)
    digest, count = (found.digest_total % DIGEST_MOD).to_bytes(32, "little"), found.count
    kept = state.stored_checkpoint()
    if (digest, count) != (kept.digest, kept.count):
        raise CorruptData(f"restore receipt: the built state's rows give state digest {digest.hex()} over {count} "
                          f"keys, but the build predicted {kept.digest.hex()} over {kept.count}",
                          path=state.path, hint=RECEIPT_HINT)
    return digest


def receipt_of_append(state: StateDB, built: SortedRows) -> bytes:
    """The receipt of a state built by one unhashed append (`StateDB.append_rows`) of `built`'s rows
    into an empty state: every row, read back through its checks, must be exactly the entry of the
    merged map it came from, in order (key, value and expiry, byte for byte: stronger than two
    equal digests), none missing or extra; the digest of the rows read back, summed in the same
    pass (`pitr.datadir.build.read_back_rows`), is then stored in the checkpoint and returned."""
    found = read_back_rows(state, built)
    if found.bad >= 0:
        _refuse_row(state, found, built)
    if found.count != len(built.keys):
        raise CorruptData(f"restore receipt: the built state: it holds {found.count} rows, the build wrote more "
                          f"(the next: key {show_key(built.keys[found.count])})", path=state.path, hint=RECEIPT_HINT)
    state.store_digest(found.digest_total, found.count)
    return (found.digest_total % DIGEST_MOD).to_bytes(32, "little")


def _refuse_row(state: StateDB, found: ReadBack, built: SortedRows | None) -> NoReturn:
    at, key = found.bad, show_key(found.key or b"")
    if built is not None and at >= len(built.keys):
        what = f"it holds more rows than the {len(built.keys)} the build wrote"
    elif found.why == ROW_DAMAGED:
        what = f"its row {at} (key {key}) fails its checks"
    elif found.why == OUT_OF_ORDER:
        what = f"its row {at} (key {key}) does not sort after the row before it"
    else:
        what = f"its row {at} (key {key}) reads back other than the build wrote it"
    raise CorruptData(f"restore receipt: the built state: {what}", path=state.path, hint=RECEIPT_HINT)
