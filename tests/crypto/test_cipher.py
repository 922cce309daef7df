"""Sealed blocks open only at their own place: every tamper (a flipped bit anywhere, a swapped or moved
block, another range, kind, key or salt) is CorruptData naming the file and the block."""

from __future__ import annotations

import random

import pytest

from pitr.crypto import DataKey, FileCipher
from pitr.crypto.cipher import CONTEXT_CHAIN, CONTEXT_FILE_SEALING, CONTEXT_INDEX_DIGEST
from pitr.errors import CorruptData
from segments.block_seal import KIND_SEGMENT, KIND_SNAPSHOT, TAG_BYTES, BlockPlace

PLACE = BlockPlace(KIND_SEGMENT, 1, 300)


def blocks(rng: random.Random) -> list[tuple[int, bytes]]:
    """Three blocks: (first LSN, bytes)."""
    return [(1, rng.randbytes(500)), (101, rng.randbytes(1)), (201, rng.randbytes(70_000))]


def sealed_file(key: DataKey, rng: random.Random, place: BlockPlace = PLACE) -> tuple[FileCipher, list[bytes]]:
    cipher = FileCipher.for_new_file(key, place, path="segments/a.seg")
    return cipher, [cipher.seal(i, lsn, data) for i, (lsn, data) in enumerate(blocks(rng))]


def test_round_trip_and_overhead(random_seed: int) -> None:
    rng = random.Random(random_seed)
    key = DataKey.new()
    plain = blocks(rng)
    cipher, sealed = sealed_file(key, random.Random(random_seed))
    reopened = FileCipher(key, cipher.salt, PLACE, path="segments/a.seg")
    for i, ((lsn, data), block) in enumerate(zip(plain, sealed, strict=True)):
        assert len(block) == len(data) + TAG_BYTES
        if len(data) >= 16:  # (a byte or two may turn up in any ciphertext by chance)
            assert data not in block
        assert reopened.open(i, lsn, block) == data


def test_two_files_never_share_a_key_stream(random_seed: int) -> None:
    key = DataKey.new()
    a = FileCipher.for_new_file(key, PLACE).seal(0, 1, bytes(64))
    b = FileCipher.for_new_file(key, PLACE).seal(0, 1, bytes(64))
    assert a != b  # a fresh salt, so another file key, for the same place and plaintext


def test_every_flipped_bit_is_caught(random_seed: int) -> None:
    rng = random.Random(random_seed)
    key = DataKey.new()
    cipher, sealed = sealed_file(key, rng)
    block = sealed[0]
    for bit in [0, 7, len(block) * 8 - TAG_BYTES * 8 - 1, len(block) * 8 - 1, *rng.sample(range(len(block) * 8), 20)]:
        garbled = bytearray(block)
        garbled[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptData, match="sealed block 0 fails its authentication tag") as err:
            cipher.open(0, 1, bytes(garbled), offset=128)
        assert err.value.path == "segments/a.seg"
        assert err.value.lsn == 1
        assert err.value.offset == 128


def test_swapped_blocks_are_caught(random_seed: int) -> None:
    key = DataKey.new()
    cipher, sealed = sealed_file(key, random.Random(random_seed))
    with pytest.raises(CorruptData, match="block 1 fails"):
        cipher.open(1, 101, sealed[2])
    with pytest.raises(CorruptData, match="block 2 fails"):
        cipher.open(2, 201, sealed[1])
    with pytest.raises(CorruptData, match="block 0 fails"):  # the right index, another first LSN
        cipher.open(0, 2, sealed[0])


def test_a_block_moved_to_another_file_is_caught(random_seed: int) -> None:
    key = DataKey.new()
    rng = random.Random(random_seed)
    _, sealed = sealed_file(key, rng)
    other, _ = sealed_file(key, rng)  # same kind and range, its own salt
    with pytest.raises(CorruptData, match="fails"):
        other.open(0, 1, sealed[0])


@pytest.mark.parametrize("place", [BlockPlace(KIND_SEGMENT, 1, 299), BlockPlace(KIND_SEGMENT, 2, 300),
                                   BlockPlace(KIND_SNAPSHOT, 1, 300)])
def test_the_same_salt_under_another_place_is_caught(random_seed: int, place: BlockPlace) -> None:
    """Copying a file's salt (it is stored in the clear) and its blocks under another range or kind
    does not open: the place is in every block's AAD (a truncated or relabelled file)."""
    key = DataKey.new()
    cipher, sealed = sealed_file(key, random.Random(random_seed))
    with pytest.raises(CorruptData, match="fails"):
        FileCipher(key, cipher.salt, place).open(0, 1, sealed[0])


def test_another_data_key_is_caught(random_seed: int) -> None:
    cipher, sealed = sealed_file(DataKey.new(), random.Random(random_seed))
    with pytest.raises(CorruptData, match="another data key"):
        FileCipher(DataKey.new(), cipher.salt, PLACE).open(0, 1, sealed[0])


def test_a_block_shorter_than_its_tag_is_caught() -> None:
    cipher = FileCipher.for_new_file(DataKey.new(), PLACE)
    with pytest.raises(CorruptData, match="shorter than its tag"):
        cipher.open(0, 1, bytes(TAG_BYTES - 1))


def test_subkeys_are_distinct_and_never_the_data_key() -> None:
    key = DataKey.new()
    subkeys = {key.subkey(c) for c in (CONTEXT_FILE_SEALING, CONTEXT_INDEX_DIGEST, CONTEXT_CHAIN)}
    assert len(subkeys) == 3
    assert key.key not in subkeys
    assert key.sealing_key == key.subkey(CONTEXT_FILE_SEALING)
    assert "secret" in repr(key)
    assert key.key.hex() not in repr(key)


def test_places_reject_impossible_ranges() -> None:
    with pytest.raises(ValueError, match="range"):
        BlockPlace(KIND_SEGMENT, 5, 4)
    with pytest.raises(ValueError, match="kind"):
        BlockPlace(9, 1, 1)
