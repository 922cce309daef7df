"""The test vectors of docs/format.md, "Encryption", checked against the code (both ways: the code
produces them, and opens what they show)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from pitr.crypto import DataKey, FileCipher, KdfParams, derive_kek, key_id, unwrap_data_key, wrap_data_key
from pitr.crypto.keys import encode_raw_key, parse_key_file
from segments.block_seal import KIND_SEGMENT, BlockPlace, block_nonce, file_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
KEK = bytes(range(32))
PASSPHRASE = b"correct horse battery"
KDF = KdfParams(10, 8, 1, bytes(range(16)))
STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
DATA_KEY = DataKey(bytes(range(32, 64)))
WRAP_NONCE = bytes(range(12))
SALT = bytes(range(64, 96))
PLACE = BlockPlace(KIND_SEGMENT, 1, 42)
BLOCK = b"pitr block"


def documented() -> dict[str, str]:
    section = DOC.read_text().split("## Encryption", 1)[1].split("### Test vectors", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^    ([a-z_]+) +(\S+)$", section, flags=re.MULTILINE))


def computed() -> dict[str, str]:
    scrypt_kek = derive_kek(PASSPHRASE, KDF)
    return {
        "key_file": encode_raw_key(KEK).decode().strip(),
        "key_id": key_id(KEK).hex(),
        "scrypt_kek": scrypt_kek.hex(),
        "scrypt_key_id": key_id(scrypt_kek).hex(),
        "wrapped": wrap_data_key(KEK, STORE, DATA_KEY.key, nonce=WRAP_NONCE).hex(),
        "sealing_key": DATA_KEY.sealing_key.hex(),
        "index_key": DATA_KEY.index_key.hex(),
        "chain_key": DATA_KEY.chain_key.hex(),
        "file_key": file_key(DATA_KEY.sealing_key, SALT).hex(),
        "aad": PLACE.aad(1, 17).hex(),
        "nonce": block_nonce(1).hex(),
        "sealed": FileCipher(DATA_KEY, SALT, PLACE).seal(1, 17, BLOCK).hex(),
    }


def test_every_vector_is_documented_as_the_code_computes_it() -> None:
    assert documented() == computed()


@pytest.mark.parametrize("label", ["wrapped", "sealed"])
def test_documented_ciphertexts_open(label: str) -> None:
    doc = documented()
    if label == "wrapped":
        assert unwrap_data_key(KEK, STORE, bytes.fromhex(doc["wrapped"]), "vector") == DATA_KEY.key
    else:
        assert FileCipher(DATA_KEY, SALT, PLACE).open(1, 17, bytes.fromhex(doc["sealed"])) == BLOCK


def test_documented_key_file_parses_to_the_key() -> None:
    parsed = parse_key_file(documented()["key_file"].encode() + b"\n", "vector")
    assert parsed.raw_key == KEK
