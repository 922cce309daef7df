"""Key files, key ids and the wrapped data key: every way a key is missing, wrong or unsafe is WrongKey."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from pitr.crypto import KdfParams, create_key_file, key_id, read_key_file, unwrap_data_key, wrap_data_key
from pitr.crypto.keys import KEY_PREFIX, WRAPPED_BYTES
from pitr.errors import InvalidArgument, WrongKey

STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
QUICK = KdfParams(10, 8, 1, bytes(16))  # the default's N = 2^17 takes half a second: tests use a small N


def write_private(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def test_create_writes_a_private_raw_key_that_reads_back(tmp_path: Path) -> None:
    path = str(tmp_path / "k")
    kek_id = create_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = read_key_file(path)
    assert key.raw_key is not None
    assert len(key.raw_key) == 32
    assert key_id(key.raw_key) == kek_id
    assert Path(path).read_bytes().startswith(KEY_PREFIX)


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"precious")
    with pytest.raises(InvalidArgument, match="never overwritten"):
        create_key_file(str(path))
    assert path.read_bytes() == b"precious"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = str(tmp_path / "k")
    create_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(WrongKey, match=f"mode {mode:04o}") as err:
        read_key_file(path)
    assert err.value.hint is not None
    assert f"chmod 600 {path}" in err.value.hint


def test_a_missing_key_file_is_wrong_key(tmp_path: Path) -> None:
    with pytest.raises(WrongKey, match="does not exist"):
        read_key_file(str(tmp_path / "absent"))


@pytest.mark.parametrize("text", [
    KEY_PREFIX + b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",  # a character short: 31 bytes and a bit
    KEY_PREFIX + b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",  # padding is not canonical
    KEY_PREFIX + b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",  # too long
    KEY_PREFIX + b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx*dHh8",  # not base64url
    KEY_PREFIX + b"",
])
def test_a_damaged_raw_key_is_refused(tmp_path: Path, text: bytes) -> None:
    with pytest.raises(WrongKey, match="key file"):
        read_key_file(write_private(tmp_path / "k", text + b"\n"))


@pytest.mark.parametrize(("text", "ok"), [(b"1234567\n", False), (b"12345678\n", True), (b"12345678", True),
                                          (b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", False), (b"", False)])
def test_passphrases_need_eight_utf8_characters(tmp_path: Path, text: bytes, ok: bool) -> None:
    path = write_private(tmp_path / "p", text)
    if ok:
        assert read_key_file(path).passphrase == b"12345678"
    else:
        with pytest.raises(WrongKey, match="passphrase"):
            read_key_file(path)


def test_a_passphrase_and_a_raw_key_never_stand_in_for_each_other(tmp_path: Path) -> None:
    raw = str(tmp_path / "k")
    create_key_file(raw)
    with pytest.raises(WrongKey, match="raw key"):
        read_key_file(raw).kek(QUICK)
    passphrase = read_key_file(write_private(tmp_path / "p", b"a long passphrase\n"))
    with pytest.raises(WrongKey, match="passphrase"):
        passphrase.kek(None)
    assert passphrase.kek(QUICK) != passphrase.kek(KdfParams(10, 8, 1, b"\x01" * 16))  # the salt matters


@pytest.mark.parametrize("params", [KdfParams(21, 8, 1, bytes(16)), KdfParams(20, 9, 1, bytes(16)),
                                    KdfParams(10, 33, 1, bytes(16)), KdfParams(10, 8, 5, bytes(16)),
                                    KdfParams(0, 8, 1, bytes(16)), KdfParams(10, 8, 1, bytes(15))])
def test_kdf_parameters_out_of_bounds_are_refused_before_any_allocation(params: KdfParams) -> None:
    with pytest.raises(ValueError, match="bounds|bytes"):
        params.check()


def test_wrap_round_trip_and_every_way_to_fail() -> None:
    kek, other = os.urandom(32), os.urandom(32)
    data_key = os.urandom(32)
    wrapped = wrap_data_key(kek, STORE, data_key)
    assert len(wrapped) == WRAPPED_BYTES == 60
    assert unwrap_data_key(kek, STORE, wrapped, "w") == data_key
    assert wrap_data_key(kek, STORE, data_key) != wrapped  # a fresh nonce each time
    with pytest.raises(WrongKey, match="does not open"):
        unwrap_data_key(other, STORE, wrapped, "w")
    with pytest.raises(WrongKey, match="does not open"):  # bound to the store id (AAD)
        unwrap_data_key(kek, uuid.uuid4(), wrapped, "w")
    for cut in (0, 12, 59):
        with pytest.raises(WrongKey, match="truncated"):
            unwrap_data_key(kek, STORE, wrapped[:cut], "w")
    for bit in (0, 12 * 8, 44 * 8, 59 * 8 + 7):  # nonce, ciphertext, tag
        garbled = bytearray(wrapped)
        garbled[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(WrongKey, match="does not open"):
            unwrap_data_key(kek, STORE, bytes(garbled), "w")
