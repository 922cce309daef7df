"""The keys that open an encrypted repository: the identity's wrapped data key and those rotation added.

An encrypted repository has one data key, wrapped under each key-encryption
key (KEK) that may open it. The identity document holds the first wrap; `pitr
key rotate` publishes each later one as `keys/<key id>.key` (a `PITRKEY`
document, never overwritten, like every published file). A key file opens
the repository when one of these wraps carries its key id and unwraps under
it. Nothing here writes before the key has been checked.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from pitr.crypto.cipher import DataKey
from pitr.crypto.keys import KdfParams, KeyFile, key_id, unwrap_data_key, wrap_data_key
from pitr.errors import CorruptData, InvalidArgument, ObjectExists, WrongKey
from pitr.repo import layout
from pitr.repo.documents import Fields, decode_document, encode_document
from pitr.repo.identity import KEYED_CHAIN, EncryptionBlock, RepoIdentity
from pitr.repo.repository import Repository

KEYS = "keys/"
KEY_MAGIC = "PITRKEY"
KEY_VERSION = 1
KEY_SUFFIX = ".key"
MAX_KEYS = 64  # wraps a repository may hold: a reader never tries more passphrases than this
NO_KEY_HINT = "give the key file with --key-file FILE or PITR_KEY_FILE"


def key_object(kek_id: bytes) -> str:
    return f"{KEYS}{kek_id.hex()}{KEY_SUFFIX}"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """One wrap of the repository's data key: where it is stored, when it was made, and the block."""

    name: str
    created_ns: int
    block: EncryptionBlock

    def encode(self, store_id: uuid.UUID) -> bytes:
        return encode_document(KEY_MAGIC, KEY_VERSION, {
            "store_id": str(store_id), "created_ns": self.created_ns, "encryption": self.block.to_json()})

    @classmethod
    def decode(cls, data: bytes, name: str, where: str, store_id: uuid.UUID) -> WrappedKey:
        """Parse and check a `keys/` document: the store's, under the name of its own key id."""
        fields = Fields(decode_document(KEY_MAGIC, KEY_VERSION, data, where), where, "key")
        if fields.store_id() != store_id:
            fields.bad("store_id", f"this repository's store id {store_id}")
        block = fields.nested("encryption")
        if block is None:
            fields.bad("encryption", "an object")
        wrapped = cls(name, fields.integer("created_ns"), EncryptionBlock.from_fields(block))
        if name != key_object(wrapped.block.key_id):
            raise CorruptData(f"holds the wrap of key id {wrapped.block.key_id.hex()}, not the one its name says",
                              path=where, hint="the file was renamed or forged: move it out of keys/")
        return wrapped


def seal_data_key(data_key: DataKey, key_file: KeyFile, store_id: uuid.UUID, *,
                  kdf: KdfParams | None = None) -> EncryptionBlock:
    """Wrap `data_key` under `key_file`'s KEK (a passphrase through scrypt with `kdf`, default fresh)."""
    params = (kdf if kdf is not None else KdfParams.new()) if key_file.is_passphrase else None
    kek = key_file.kek(params)
    return EncryptionBlock(key_id(kek), wrap_data_key(kek, store_id, data_key.key), params)


def new_encryption(key_file: KeyFile, store_id: uuid.UUID, *,
                   kdf: KdfParams | None = None) -> tuple[EncryptionBlock, DataKey]:
    """A fresh data key for a new repository, and its identity's encryption block."""
    data_key = DataKey.new()
    return seal_data_key(data_key, key_file, store_id, kdf=kdf), data_key


async def repository_keys(repo: Repository) -> list[WrappedKey]:
    """Every wrap of an encrypted repository's data key (the identity's first); [] for a plaintext one."""
    ident = await repo.require_identity()
    if ident.encryption is None:
        return []
    keys = [WrappedKey(layout.IDENTITY, ident.created_ns, ident.encryption)]
    listed = [i for i in await repo.storage.list(KEYS) if i.name.endswith(KEY_SUFFIX)]
    if len(listed) > MAX_KEYS:
        raise CorruptData(f"{len(listed)} wrapped keys, more than the {MAX_KEYS} a repository may hold",
                          path=f"{repo.url}/{KEYS}", hint="move the ones you did not add out of keys/")
    for info in listed:
        data = await repo.storage.read(info.name)
        keys.append(WrappedKey.decode(data, info.name, f"{repo.url}/{info.name}", ident.store_id))
    return keys


async def open_data_key(repo: Repository, key_file: KeyFile | None) -> DataKey | None:
    """The repository's data key through `key_file`; None for a plaintext repository opened without a key.

    `WrongKey` when the repository is encrypted and no key was given, when
    a key was given for a plaintext repository (it would not be used: refused
    rather than ignored), or when no wrap opens under the key.
    """
    ident = await repo.require_identity()
    if ident.encryption is None:
        if key_file is not None:
            raise WrongKey(f"{repo.url} is not encrypted, but a key file ({key_file.path}) was given: "
                           "refusing to treat a plaintext repository as an encrypted one",
                           hint="leave out the key file (--key-file, PITR_KEY_FILE), or start an encrypted "
                                "history in a new, empty repository")
        return None
    keys = await repository_keys(repo)
    if key_file is None:
        raise WrongKey(f"{repo.url} is encrypted (key id {', '.join(k.block.key_id.hex() for k in keys)}) "
                       "and no key was given", hint=NO_KEY_HINT)
    return await _unwrap_any(repo, ident, keys, key_file)


async def _unwrap_any(repo: Repository, ident: RepoIdentity, keys: list[WrappedKey], key_file: KeyFile) -> DataKey:
    import anyio

    for wrapped in keys:
        block = wrapped.block
        if (block.kdf is None) == key_file.is_passphrase:
            continue  # a raw key never opens a passphrase's wrap, nor the reverse
        kdf = block.kdf
        kek = key_file.kek(kdf) if kdf is None else await anyio.to_thread.run_sync(key_file.kek, kdf)
        if key_id(kek) == block.key_id:
            where = f"{repo.url}/{wrapped.name}"
            return DataKey(unwrap_data_key(kek, ident.store_id, block.wrapped_key, where))
    kind = "passphrase" if key_file.is_passphrase else "raw key"
    ids = ", ".join(k.block.key_id.hex() for k in keys)
    raise WrongKey(f"the {kind} in {key_file.path} is not one of the keys of {repo.url} (key ids {ids})",
                   hint="use the key file the repository was created with, or one `pitr key rotate` added")


async def rotate_key(repo: Repository, old: KeyFile, new: KeyFile, *, kdf: KdfParams | None = None,
                     now_ns: int | None = None) -> WrappedKey:
    """Publish the data key wrapped under `new`'s KEK (checked to open it through `old` first).

    The data is not rewritten and no file is replaced: the new wrap is a new
    object, and the earlier wraps keep opening the repository (docs/operations.md,
    "Keys: creating, backing up, rotating, and what is lost with them").
    """
    import anyio

    ident = await repo.require_identity()
    data_key = await open_data_key(repo, old)
    if data_key is None:  # open_data_key refuses a key for a plaintext repository; this is for the type checker
        raise WrongKey(f"{repo.url} is not encrypted: there is no key to rotate")
    block = await anyio.to_thread.run_sync(lambda: seal_data_key(data_key, new, ident.store_id, kdf=kdf))
    known = {k.block.key_id for k in await repository_keys(repo)}
    if block.key_id in known:
        raise InvalidArgument(f"the key in {new.path} (key id {block.key_id.hex()}) already opens {repo.url}")
    wrapped = WrappedKey(key_object(block.key_id), time.time_ns() if now_ns is None else now_ns, block)
    # A check the new wrap opens to the same data key before it is published.
    kek = new.kek(block.kdf) if block.kdf is None else await anyio.to_thread.run_sync(new.kek, block.kdf)
    if unwrap_data_key(kek, ident.store_id, block.wrapped_key, wrapped.name) != data_key.key:
        raise WrongKey("the new wrap does not open to the repository's data key (report this as a bug)")
    try:
        await repo.storage.publish(wrapped.name, wrapped.encode(ident.store_id))
    except ObjectExists as exc:
        raise InvalidArgument(f"the key in {new.path} (key id {block.key_id.hex()}) already opens {repo.url}"
                              ) from exc
    return wrapped


async def unlock(repo: Repository, key_file: KeyFile | None) -> DataKey | None:
    """Open the repository's data key with `key_file` (`open_data_key`) and hand its keys to the
    repository's readers and archivers; None (and nothing set) for a plaintext repository."""
    import anyio

    data_key = await open_data_key(repo, key_file)
    if data_key is not None:
        ident = await repo.require_identity()
        repo.segment_keys = data_key.segment_keys(keyed_chain=ident.keyed_chain)
        repo.catalog.link_key = data_key.chain_link_key if ident.keyed_chain else None
        await anyio.to_thread.run_sync(repo.catalog.use_index_key, data_key.index_key)
    return data_key


async def unlock_all(repos: list[Repository], key_path: str) -> None:
    """`unlock` each repository with the key file at `key_path` (read and checked once).

    A key given for a place that is not a repository yet is refused: creating an encrypted
    repository is `pitr archive --encrypt`'s (`pitr.cli._encrypt`), never a side effect of a key."""
    from pitr.crypto.keys import read_key_file

    key_file = read_key_file(key_path)
    for repo in repos:
        if await repo.identity() is None:
            raise WrongKey(f"{repo.url} is not a repository yet: refusing to start a plaintext one with a key given",
                           hint="pass --encrypt to create it encrypted under the key, or leave out the key file "
                                "(--key-file, PITR_KEY_FILE) to archive without encryption")
        await unlock(repo, key_file)


async def adopt_keys(target: Repository, source: Repository) -> None:
    """Give `target`, which holds `source`'s history under the same identity (so the same wrapped data
    key: `pitr copy`), the keys `source` was unlocked with; nothing for a plaintext source."""
    import anyio

    keys = source.segment_keys
    if keys is None:
        return
    if await target.require_identity() != await source.require_identity():
        raise WrongKey(f"{target.url} does not hold the identity of {source.url}: its key cannot be the same")
    target.segment_keys = keys
    target.catalog.link_key = source.catalog.link_key
    await anyio.to_thread.run_sync(target.catalog.use_index_key, keys.index_key)


async def copy_wraps(source: Repository, target: Repository) -> list[str]:
    """Publish in `target` every `keys/` wrap of `source` it lacks (`pitr copy`: a copy opens under
    every key that `pitr key rotate` added, not only the identity's); the names published."""
    ident = await source.require_identity()
    if ident.encryption is None:
        return []
    present = {i.name for i in await target.storage.list(KEYS)}
    published = []
    for wrapped in await repository_keys(source):  # each checked: the store's, named for its key id
        if wrapped.name == layout.IDENTITY or wrapped.name in present:
            continue
        try:
            await target.storage.publish(wrapped.name, wrapped.encode(ident.store_id))
        except ObjectExists:
            continue  # published meanwhile; never replaced
        published.append(wrapped.name)
    return published


async def unlock_existing(repos: list[Repository], key_path: str | None) -> None:
    """`unlock` each repository that exists with the key file at `key_path` (read and checked once);
    nothing without a key (an encrypted repository is then refused where it is read)."""
    if not key_path:
        return
    from pitr.crypto.keys import read_key_file

    key_file = read_key_file(key_path)
    for repo in repos:
        if await repo.identity() is not None:
            await unlock(repo, key_file)


async def claim_encrypted(repo: Repository, ident: RepoIdentity, key_file: KeyFile, *,
                          kdf: KdfParams | None = None, archived_before: bool = False) -> DataKey:
    """Claim a new, empty repository for `ident`'s history, encrypted under `key_file` (a fresh data
    key wrapped in the identity), and unlock it; one that already holds this history must open with
    `key_file` (a plaintext one is refused: it never becomes half encrypted). `archived_before` as
    for `Repository.claim` (a store that archived there before finds it lost, never restarted)."""
    import dataclasses

    import anyio

    block, _ = await anyio.to_thread.run_sync(lambda: new_encryption(key_file, ident.store_id, kdf=kdf))
    await repo.claim(dataclasses.replace(ident, encryption=block, chain=KEYED_CHAIN),  # docs/format.md "Keyed chain"
                     archived_before=archived_before)
    data_key = await unlock(repo, key_file)
    if data_key is None:  # unlock refuses a key for a plaintext repository; this is for the type checker
        raise WrongKey(f"{repo.url} is not encrypted")
    return data_key
