"""Key-encryption keys (KEK) from key files, key ids, and wrapping the repository's data key.

A key file is either a raw key, `pitr-key-v1:` + base64url of 32 random bytes
(`create_key_file`), or a passphrase of at least 8 characters that scrypt
turns into a KEK with parameters and a salt recorded in the repository
(`KdfParams`). A key file readable by group or others is refused. The data key
is wrapped with AES-256-GCM bound to the repository's store id and the KEK's
key id (docs/format.md, "Encryption"). Every failure is `WrongKey`, raised
before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import uuid
from dataclasses import dataclass

from blake3 import blake3

from pitr.errors import InvalidArgument, WrongKey, file_error

KEY_PREFIX = b"pitr-key-v1:"
KEY_BYTES = 32
KEY_ID_BYTES = 16
KEY_ID_CONTEXT = "pitr key id v1"
MAX_KEY_FILE = 4096  # a key file larger than this is not a key file
MIN_PASSPHRASE = 8
WRAP_TAG = b"pitr-wrap-v1"
WRAP_NONCE_BYTES = 12
WRAPPED_BYTES = WRAP_NONCE_BYTES + KEY_BYTES + 16  # nonce, encrypted data key, GCM tag = 60
PERMISSIONS_HINT = "make the key file private to its owner: chmod 600 FILE"


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt's cost parameters and salt, recorded in the repository for a passphrase key.

    Read back from an untrusted document, the parameters are bounded
    (`check`): a hostile document cannot make the KDF allocate more than
    `MAX_MEMORY` bytes or run for hours.
    """

    log2_n: int = 17
    r: int = 8
    p: int = 1
    salt: bytes = b""

    SALT_BYTES = 16
    MAX_MEMORY = 1 << 30  # 128 * r * N bytes: 1 GiB, eight times the default's 128 MiB
    MAX_LOG2_N = 20
    MAX_R = 32
    MAX_P = 4

    @classmethod
    def new(cls, log2_n: int = 17, r: int = 8, p: int = 1) -> KdfParams:
        """Parameters with a fresh random salt."""
        params = cls(log2_n, r, p, os.urandom(cls.SALT_BYTES))
        params.check()
        return params

    def check(self) -> None:
        """`ValueError` unless every parameter is within the bounds a reader accepts."""
        if not (1 <= self.log2_n <= self.MAX_LOG2_N and 1 <= self.r <= self.MAX_R and 1 <= self.p <= self.MAX_P):
            raise ValueError(f"scrypt parameters N=2^{self.log2_n}, r={self.r}, p={self.p} are out of bounds "
                             f"(N <= 2^{self.MAX_LOG2_N}, r <= {self.MAX_R}, p <= {self.MAX_P})")
        if self.memory() > self.MAX_MEMORY:
            raise ValueError(f"scrypt parameters need {self.memory()} bytes, more than {self.MAX_MEMORY}")
        if len(self.salt) != self.SALT_BYTES:
            raise ValueError(f"the scrypt salt is {len(self.salt)} bytes, not {self.SALT_BYTES}")

    def memory(self) -> int:
        return 128 * self.r * (1 << self.log2_n)


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A key file's contents: a raw KEK, or a passphrase that needs `KdfParams` to become one."""

    path: str
    raw_key: bytes | None = None
    passphrase: bytes | None = None

    @property
    def is_passphrase(self) -> bool:
        return self.passphrase is not None

    def kek(self, params: KdfParams | None) -> bytes:
        """The key-encryption key: the raw key, or scrypt(passphrase, params)."""
        if self.raw_key is not None:
            if params is not None:
                raise WrongKey(f"{self.path} holds a raw key, but the repository's key is a passphrase",
                               hint="use the passphrase file the repository was created (or last rotated) with")
            return self.raw_key
        assert self.passphrase is not None
        if params is None:
            raise WrongKey(f"{self.path} holds a passphrase, but the repository's key is a raw key file",
                           hint="use the key file the repository was created (or last rotated) with")
        return derive_kek(self.passphrase, params)


def derive_kek(passphrase: bytes, params: KdfParams) -> bytes:
    """scrypt(passphrase, salt, N, r, p) -> 32 bytes, after bounding the parameters."""
    params.check()
    return hashlib.scrypt(passphrase, salt=params.salt, n=1 << params.log2_n, r=params.r, p=params.p,
                          maxmem=params.memory() + (1 << 20), dklen=KEY_BYTES)


def key_id(kek: bytes) -> bytes:
    """The 16-byte id of a KEK: BLAKE3 derive_key("pitr key id v1", KEK), truncated."""
    return blake3(kek, derive_key_context=KEY_ID_CONTEXT).digest()[:KEY_ID_BYTES]


def encode_raw_key(key: bytes) -> bytes:
    """A raw key file's contents: the prefix, base64url of the key (no padding), a newline."""
    return KEY_PREFIX + base64.urlsafe_b64encode(key).rstrip(b"=") + b"\n"


def create_key_file(path: str) -> bytes:
    """Write a new raw key file (mode 0600, never over an existing file); returns its key id."""
    key = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError as exc:
        raise InvalidArgument(f"{path} already exists; a key file is never overwritten (data sealed under "
                              "the key it holds would be lost with it)") from exc
    except OSError as exc:
        raise file_error(exc, path, "create the key file") from exc
    try:
        try:
            os.write(fd, encode_raw_key(key))
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        _remove_quietly(path)
        raise file_error(exc, path, "write the key file") from exc
    return key_id(key)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # the write already failed; that error is the one reported


def read_key_file(path: str) -> KeyFile:
    """Read and check a key file: private to its owner, a raw key or a passphrase; `WrongKey` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise WrongKey(f"key file {path} does not exist",
                       hint="give the key file the repository was created with (--key-file or PITR_KEY_FILE)") from exc
    except OSError as exc:
        raise WrongKey(f"cannot open key file {path}: {exc.strerror or exc}", hint=PERMISSIONS_HINT) from exc
    try:
        info = os.fstat(fd)  # the mode of the file opened, not of whatever the name points to later
        if not stat.S_ISREG(info.st_mode):
            raise WrongKey(f"key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise WrongKey(f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}: readable or writable "
                           "by group or others, so the key may be known to them", hint=PERMISSIONS_HINT.replace(
                               "FILE", path))
        data = os.read(fd, MAX_KEY_FILE + 1)
    except OSError as exc:
        raise WrongKey(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise WrongKey(f"key file {path} is larger than {MAX_KEY_FILE} bytes: not a key file")
    return parse_key_file(data, path)


def parse_key_file(data: bytes, path: str) -> KeyFile:
    """A key file's bytes as a raw key (after `pitr-key-v1:`) or a passphrase (one trailing newline dropped)."""
    if data.startswith(KEY_PREFIX):
        text = data[len(KEY_PREFIX):].rstrip(b"\r\n")
        try:
            key = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as exc:
            raise WrongKey(f"key file {path}: the key after {KEY_PREFIX.decode()} is not base64url") from exc
        if len(key) != KEY_BYTES or base64.urlsafe_b64encode(key).rstrip(b"=") != text:  # canonical only
            raise WrongKey(f"key file {path}: the key after {KEY_PREFIX.decode()} is not {KEY_BYTES} bytes "
                           "in base64url", hint="the file was damaged or cut; use your backup copy of it")
        return KeyFile(path, raw_key=key)
    passphrase = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    try:
        length = len(passphrase.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WrongKey(f"key file {path}: a passphrase must be UTF-8 text") from exc
    if length < MIN_PASSPHRASE:
        raise WrongKey(f"key file {path}: a passphrase needs at least {MIN_PASSPHRASE} characters, it has {length}",
                       hint="write a longer passphrase, or make a random key with `pitr key create FILE`")
    return KeyFile(path, passphrase=passphrase)


def _wrap_aad(store_id: uuid.UUID, kek_id: bytes) -> bytes:
    return WRAP_TAG + store_id.bytes + kek_id


def wrap_data_key(kek: bytes, store_id: uuid.UUID, data_key: bytes, *, nonce: bytes | None = None) -> bytes:
    """nonce ‖ AES-256-GCM(KEK, data key, AAD = "pitr-wrap-v1" ‖ store id ‖ key id): 60 bytes."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(data_key) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes")
    nonce = os.urandom(WRAP_NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != WRAP_NONCE_BYTES:
        raise ValueError(f"a wrap nonce is {WRAP_NONCE_BYTES} bytes")
    return nonce + AESGCM(kek).encrypt(nonce, data_key, _wrap_aad(store_id, key_id(kek)))


def unwrap_data_key(kek: bytes, store_id: uuid.UUID, wrapped: bytes, where: str) -> bytes:
    """The data key inside `wrapped`; `WrongKey` for another KEK or a garbled or truncated wrap."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(wrapped) != WRAPPED_BYTES:
        raise WrongKey(f"{where}: the wrapped data key is {len(wrapped)} bytes, not {WRAPPED_BYTES} "
                       "(truncated or damaged)", hint="restore the repository's identity document from a copy")
    nonce, sealed = wrapped[:WRAP_NONCE_BYTES], wrapped[WRAP_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, _wrap_aad(store_id, key_id(kek)))
    except InvalidTag as exc:
        raise WrongKey(f"{where}: the key does not open the repository's data key (another key, or a "
                       "damaged wrapped key)", hint="use the key file the repository was created (or last "
                       "rotated) with") from exc
