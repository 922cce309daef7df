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

from pitr.datadir.entries import DIGEST_MOD
from pitr.datadir.rowcodec import encode_rows
from pitr.datadir.state import I64BE, StateDB
from pitr.datadir.view import show_key
from pitr.errors import CorruptData
from segments.snapshot_encode import digest_terms

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


def receipt_of_append(state: StateDB, puts: list[tuple[bytes, bytes]], expiring: list[tuple[bytes, bytes]]) -> bytes:
    """The receipt of a state built by one unhashed append (`StateDB.append_sorted(predict=False)`)
    of `puts` and `expiring` into an empty state: every row, read back through its checks, must be
    exactly the entry the build wrote, in order (key, value and expiry, byte for byte: stronger
    than two equal digests); the digest of the rows read back is then stored in the checkpoint
    and returned. Hashing the rows once, after they are read back, takes the place of hashing
    them both as they are written and as they are read."""
    expiries = {key: I64BE.unpack(raw)[0] for key, raw in expiring}
    total = count = 0
    with state.read_view() as view:
        for encoded in view.encoded_rows(None):
            wrote = puts[count:count + len(encoded)]
            expected = _entries(wrote, expiries)
            if encoded != expected:
                _refuse_rows(state, count, wrote, encoded, expected)
            total += digest_terms(encoded)
            count += len(encoded)
    if count != len(puts):
        _refuse_rows(state, count, puts[count:], [], _entries(puts[count:count + 1], expiries))
    state.store_digest(total, count)
    return (total % DIGEST_MOD).to_bytes(32, "little")


def _entries(wrote: list[tuple[bytes, bytes]], expiries: dict[bytes, int]) -> list[bytes]:
    """The snapshot entry encodings of (key, value) puts with their expiries."""
    if not wrote:
        return []
    keys, values = map(list, zip(*wrote, strict=True))
    exps: list[int | None] = [expiries.get(key) for key in keys] if expiries else [None] * len(keys)
    return encode_rows(keys, values, exps)[1]  # the compiled codec (its rows are not kept): 3x encode_entries


def _refuse_rows(state: StateDB, at: int, wrote: list[tuple[bytes, bytes]], read: list[bytes],
                 expected: list[bytes]) -> NoReturn:
    shorter = min(len(read), len(expected))
    where = next((i for i, (got, want) in enumerate(zip(read[:shorter], expected[:shorter], strict=True))
                  if got != want), shorter)
    if where < len(read) and where < len(expected):
        what = f"its row {at + where} (key {show_key(wrote[where][0])}) reads back other than the build wrote it"
    elif where < len(expected):
        what = f"it holds {at + where} rows, the build wrote more (the next: key {show_key(wrote[where][0])})"
    else:
        what = f"it holds more rows than the {at + where} the build wrote"
    raise CorruptData(f"restore receipt: the built state: {what}", path=state.path, hint=RECEIPT_HINT)
