"""A snapshot checked as it is read: every check of full verification made in the one pass that reads
and decompresses each block, the whole-file checks (counts, state digest, file digest) after the last.

`SnapshotReader.verify` drains it without keeping the entries; a restore takes each block's entries
as (key, change) while the pass goes on, and publishes nothing unless the pass ends without an
error. Each block is one call of the compiled scan (`segments.snapshot_codec.scan_block`: bounds,
key order, the entries' state-digest terms and, for a restore, the decoded entries); the reference
decoder `SnapshotReader.entry_spans` names the damage the scan finds.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import NoReturn

import zstandard
from blake3 import blake3

from segments._errors import CorruptFile
from segments.fold import Change
from segments.snapshot import SnapshotReader
from segments.snapshot_codec import OK, block_terms, scan_block

ReadAhead = Callable[[Iterator["Hashed"]], AbstractContextManager[Iterator["Hashed"]]]
_MOD = 1 << 256
_READ = 8 << 20  # bytes per read of the index for the file digest


Hashed = tuple[bytes, int, int]  # a block decompressed, the status of its terms and their sum


def blocks_hashed(reader: SnapshotReader, hasher: blake3) -> Iterator[Hashed]:
    """Every block decompressed, in order, each CRC checked, with its entries' state-digest terms
    (`block_terms`); every byte the file digest covers before the index goes through `hasher` in
    file order (the header, then each block as stored: the blocks lie back to back from the header
    to the index, which the reader checked). Safe to run in a read-ahead thread (it has a
    decompressor of its own), where the hashing, without the interpreter's lock, runs beside the
    decoding of the block before."""
    dctx = zstandard.ZstdDecompressor()
    hasher.update(reader.source.read(0, reader.header.size))
    for i in range(len(reader.blocks)):
        data = reader.stored_block(i)
        hasher.update(data)
        raw = reader.open_stored(i, data, dctx)
        yield (raw, *block_terms(raw, reader.blocks[i].entry_count))


def checked_blocks(reader: SnapshotReader, *, decode: bool = True,
                   read_ahead: ReadAhead | None = None) -> Generator[list[tuple[bytes, Change]], None, None]:
    """Every block's entries as (key, change) in key order (each list empty without `decode`),
    with every check `SnapshotReader.verify` makes.

    Each block's own checks are made before its entries are yielded; the whole-file checks
    (counts and logical bytes against the footer, the state digest, the file digest) after the
    last block, before the iterator ends: use nothing read unless it ends without an error.
    `read_ahead` (`pitr.restore.prefetch.prefetched`, say) runs the reading, hashing and
    decompression in another thread.
    """
    path = reader.source.name
    hasher = blake3(max_threads=1)
    last: bytes | None = None
    total = count = logical = 0
    reading = blocks_hashed(reader, hasher)
    with read_ahead(reading) if read_ahead is not None else nullcontext(reading) as raws:
        for i, (raw, terms_status, terms) in enumerate(raws):
            b = reader.blocks[i]
            status, _at, _none, size, first, newest, out = scan_block(raw, b.entry_count, last, decode, False)
            if status != OK or terms_status != OK:  # both walk the entries alike: damage shows in both
                refuse_block(reader, i, raw, last)
            if first != b.first_key:
                raise CorruptFile(f"snapshot block {i} first key does not match the index", path=path,
                                  offset=b.offset)
            total += terms
            count += b.entry_count
            logical += size
            last = newest
            yield out if out is not None else []
    # the reading is over (a read-ahead thread has stopped): the hasher has seen every block
    if count != reader.footer.entry_count or logical != reader.footer.logical_bytes:
        raise CorruptFile("entry count or logical bytes do not match the footer", path=path)
    if (total % _MOD).to_bytes(32, "little") != reader.footer.state_digest:
        raise CorruptFile("state digest mismatch", path=path)
    end = reader.source.size - 40
    pos = reader.footer.index_offset
    while pos < end:
        n = min(_READ, end - pos)
        hasher.update(reader.source.read(pos, n))
        pos += n
    if hasher.digest() != reader.footer.file_digest:
        raise CorruptFile("file digest (BLAKE3) mismatch", path=path, offset=end)


def refuse_block(reader: SnapshotReader, i: int, raw: bytes, previous: bytes | None) -> NoReturn:
    """Raise what is wrong with block `i`, which the compiled scan refused: the reference decoder
    (`entry_spans`) names damage to the entries' layout; otherwise a key is out of order."""
    b = reader.blocks[i]
    for _entry in reader.entry_spans(i, raw):
        pass
    raise CorruptFile(f"snapshot block {i} keys out of order", path=reader.source.name, offset=b.offset)
