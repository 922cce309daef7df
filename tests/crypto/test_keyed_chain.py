"""The keyed chain (docs/format.md, "Keyed chain"): segment version 3 links its pieces with BLAKE3's keyed
mode under the repository's link subkey, so that a piece table rewritten by someone without the key, with
every unkeyed checksum recomputed, fails the fold; a segment whose chain mode is not the repository's is
refused; merges keep the keyed chain."""

from __future__ import annotations

import io
import random
import re
import struct
import uuid
from pathlib import Path

import pytest
from blake3 import blake3

from pitr.crypto import DataKey
from pitr.repo.identity import KEYED_CHAIN, RepoIdentity
from segments import BytesSource, CorruptFile, SegmentReader, chain, genesis, read_meta
from segments import segment_format as fmt
from segments.merge import merge_segments
from tests.crypto.test_sealed_segments import sealed, secret_records
from tests.fuzz.reseal import reseal_segment

NAME = "segments/00000000000000000001-00000000000000000060.seg"
VECTOR_STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")


def documented(section: str) -> dict[str, str]:
    """The `name  hex` lines of a docs/format.md section's test vectors (a multi-word name joined by '_')."""
    text = (Path(__file__).parents[2] / "docs" / "format.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0].split("### Test vector", 1)[1]
    return {"_".join(name.split()): value for name, value in
            re.findall(r"^    ([a-z_(). ,\[\]0-9]+?) +([0-9a-f]{64,})$", body, flags=re.MULTILINE)}


def test_the_documented_vectors_are_the_computed_ones() -> None:
    data_key = DataKey(bytes(range(0x20, 0x40)))
    start = genesis(VECTOR_STORE)
    digest = blake3(b"pitr records", key=data_key.chain_key).digest()
    first, second = chain.Piece(1, 42, digest), chain.Piece(43, 50, digest)
    assert documented("Keyed chain") == {
        "link_key": data_key.chain_link_key.hex(), "genesis": start.hex(), "records_digest": digest.hex(),
        "keyed_link(genesis,_1..42)": chain.keyed_link(data_key.chain_link_key, start, first).hex(),
        "fold(genesis,_[1..42,_43..50])": chain.fold(start, [first, second], data_key.chain_link_key).hex(),
        "unkeyed_fold_of_the_same_pieces": chain.fold(start, [first, second]).hex()}


def test_vectors_of_the_keyed_chain() -> None:
    """The values printed in docs/format.md, "Keyed chain", "Test vectors"."""
    data_key = DataKey(bytes(range(0x20, 0x40)))
    assert data_key.chain_link_key.hex() == "c1d87d4dc0ab4af1fb9eb011472244e285ef47ce1c050b00a65b0df024a2a19b"
    start = genesis(VECTOR_STORE)
    assert start.hex() == "36b3d7d64a62bf26a681b8de7ac4f87f64d70df278077ef3af83fe18f4b64101"
    digest = blake3(b"pitr records", key=data_key.chain_key).digest()
    assert digest.hex() == "0110aaf100df5f5ccba2555aa90aeaffc2848c490cc4f06c1e439075ceece280"
    first, second = chain.Piece(1, 42, digest), chain.Piece(43, 50, digest)
    assert chain.keyed_link(data_key.chain_link_key, start, first).hex() == \
        "a50154c0fac9419e968b343ccd8704a9e82636715298c21066c1eedb7621cb97"
    assert chain.fold(start, [first, second], data_key.chain_link_key).hex() == \
        "420bc30a3df6a230a9a293f1f7d82448302d1bea5c67c7b9492c07f06a5be95d"
    assert chain.fold(start, [first, second]).hex() == \
        "ca32705b8380411dd30c2ff962e8f7dad625ddd7c556795f61639253cbb55b1c"


def test_a_keyed_segment_is_version_3_and_reads_back_through_its_keys(random_seed: int) -> None:
    keys = DataKey.new().segment_keys(keyed_chain=True)
    records = secret_records(random.Random(random_seed), 1, 60)
    blob = sealed(records, keys)
    assert blob[8:10] == struct.pack("<H", fmt.KEYED_CHAIN_VERSION)
    meta = read_meta(BytesSource(blob, NAME))  # the structure checks need no key
    assert meta.header.keyed_chain
    assert meta.chain_digest != chain.fold(meta.header.prev_chain_digest, meta.pieces)  # no one without it can fold
    reader = SegmentReader(BytesSource(blob, NAME), keys=keys)
    reader.verify()
    assert list(reader.iter_records()) == records


def test_a_piece_table_rewritten_without_the_key_fails_the_keyed_fold(random_seed: int) -> None:
    """The adversary's move that the sealed blocks alone do not catch in a quick check: replace a piece's
    records digest, then recompute every unkeyed checksum (the tables CRC, the file digest)."""
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys(keyed_chain=True)
    blob = bytearray(sealed(secret_records(rng, 1, 60), keys))
    meta = read_meta(BytesSource(bytes(blob), NAME))
    pieces_at = meta.trailer.index_offset + len(meta.index) * fmt.INDEX_ENTRY.size
    blob[pieces_at + 16:pieces_at + 48] = rng.randbytes(32)
    forged = reseal_segment(bytes(blob))
    read_meta(BytesSource(forged, NAME))  # every unkeyed check passes
    with pytest.raises(CorruptFile, match="keyed chain digest does not match the piece table of LSNs 1..60") as err:
        SegmentReader(BytesSource(forged, NAME), keys=keys)
    assert err.value.path == NAME
    assert err.value.lsn == 1


def test_a_segment_whose_chain_mode_is_not_the_repositorys_is_refused(random_seed: int) -> None:
    data_key = DataKey.new()
    records = secret_records(random.Random(random_seed), 1, 60)
    unkeyed = sealed(records, data_key.segment_keys())
    with pytest.raises(CorruptFile, match="chain is not keyed, but the repository's is"):
        SegmentReader(BytesSource(unkeyed, NAME), keys=data_key.segment_keys(keyed_chain=True))
    keyed = sealed(records, data_key.segment_keys(keyed_chain=True))
    with pytest.raises(CorruptFile, match="chain is keyed, but the repository's identity does not say so"):
        SegmentReader(BytesSource(keyed, NAME), keys=data_key.segment_keys())


def test_merging_keyed_segments_keeps_the_keyed_chain(random_seed: int) -> None:
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys(keyed_chain=True)
    first = sealed(secret_records(rng, 1, 30), keys)
    head = read_meta(BytesSource(first, "a.seg"))
    second = sealed(secret_records(rng, 31, 30), keys, prev=head.chain_digest)
    readers = [SegmentReader(BytesSource(b, n), keys=keys) for b, n in ((first, "a.seg"), (second, "b.seg"))]
    out = io.BytesIO()
    merged = merge_segments(readers, out, keys=keys)
    assert merged.chain_digest == read_meta(BytesSource(second, "b.seg")).chain_digest
    SegmentReader(BytesSource(out.getvalue(), NAME), keys=keys).verify()


def test_the_identity_says_the_chain_is_keyed_only_when_encrypted() -> None:
    from pitr.errors import CorruptData
    from pitr.repo.documents import encode_document
    from pitr.repo.identity import IDENTITY_MAGIC, EncryptionBlock

    block = EncryptionBlock(bytes(16), bytes(60))
    ident = RepoIdentity(VECTOR_STORE, "s", 1, 1, genesis(VECTOR_STORE), encryption=block, chain=KEYED_CHAIN)
    data = ident.encode()
    assert b'"chain": "keyed-v1"' in data
    assert RepoIdentity.decode(data, "pitr-repository").keyed_chain
    body = {"store_id": str(VECTOR_STORE), "name": "s", "created_ns": 1, "first_lsn": 1,
            "start_chain_digest": genesis(VECTOR_STORE).hex(), "source": "embedded", "parent": None,
            "chain": KEYED_CHAIN}
    with pytest.raises(CorruptData, match="'chain'"):  # a plaintext identity (version 1) claiming a keyed chain
        RepoIdentity.decode(encode_document(IDENTITY_MAGIC, 1, body), "pitr-repository")
