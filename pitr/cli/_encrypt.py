"""`pitr archive --encrypt`: creating encrypted repositories, and never a plaintext one under the flag.

Everything that can refuse does so before anything is written: the key file
is read and checked (present, private to its owner, a canonical raw key or a
long enough passphrase), every repository that exists already must be
encrypted and open under it (a plaintext one is `WrongKey`: it never becomes
half encrypted), and only then are the new, empty ones claimed, each with a
fresh data key wrapped under the key file's KEK in its identity document.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from pitr.archiver.archiver import identity_for
from pitr.archiver.sources import CommitSource
from pitr.crypto.keys import KeyFile, read_key_file
from pitr.errors import InvalidArgument
from pitr.repo import layout
from pitr.repo.keyring import claim_encrypted, unlock
from pitr.repo.repository import Repository


@dataclass(slots=True)
class Encryption:
    """The key of `--encrypt`, checked, and the repositories still to be claimed with it."""

    key_file: KeyFile
    new: list[Repository] = field(default_factory=list)


def read_encryption_key(args: argparse.Namespace) -> Encryption:
    """The key of --encrypt, read and checked before any repository is opened (or made)."""
    path = getattr(args, "key_file", None)
    if not path:
        raise InvalidArgument("--encrypt needs the key: pass --key-file FILE or set PITR_KEY_FILE "
                              "(`pitr key create FILE` writes a new one)")
    return Encryption(read_key_file(path))


async def check_repositories(encryption: Encryption, repos: list[Repository]) -> None:
    """Unlock each existing repository with the key (WrongKey for a plaintext one or another key's);
    list the new ones. Writes nothing."""
    for repo in repos:
        if await repo.identity() is None:
            encryption.new.append(repo)
        else:
            await unlock(repo, encryption.key_file)  # WrongKey for a plaintext one, or another key's


async def claim_new(encryption: Encryption, source: CommitSource, *, source_kind: str = "embedded",
                    say: Callable[[str], None] | None = None) -> None:
    """Claim each new repository for `source`'s history, encrypted (the archiver then finds it claimed);
    `say` is told of each, with the key id that opens it."""
    import anyio

    ident = identity_for(source, source_kind)
    markers = await anyio.to_thread.run_sync(source.wal.markers.archived_lsns)
    for repo in encryption.new:
        archived_before = layout.repo_key(repo.url) in markers
        await claim_encrypted(repo, ident, encryption.key_file, archived_before=archived_before)
        block = (await repo.require_identity()).encryption
        if say is not None and block is not None:  # (claim_encrypted refuses a repository left plaintext)
            say(f"{repo.url}: created encrypted (AES-256-GCM), opened by key id {block.key_id.hex()}")
    encryption.new = []
