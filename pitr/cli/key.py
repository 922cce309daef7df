"""pitr key create|rotate|list: encryption keys (docs/operations.md, "Keys: creating, backing up, rotating,
and what is lost with them")."""

from __future__ import annotations

import argparse

from pitr.cli.common import add_json, add_repo, print_json, repositories
from pitr.errors import InvalidArgument
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time

KEY_FILE_ENV = "PITR_KEY_FILE"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("key", help="create an encryption key file, rotate or list a repository's keys")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="write a new random key file (mode 0600, never over a file)")
    create.add_argument("file", metavar="FILE")
    add_json(create)
    create.set_defaults(run=run_create)
    rotate = actions.add_parser("rotate", help="wrap the repository's data key under a new key (data not rewritten)")
    add_repo(rotate)  # with --key-file: a key that opens the repository now (default $PITR_KEY_FILE)
    rotate.add_argument("--new-key-file", required=True, help="the key (or passphrase file) to add")
    add_json(rotate)
    rotate.set_defaults(run=run_rotate)
    listing = actions.add_parser("list", help="the key ids that open the repository (no key needed)")
    add_repo(listing)
    add_json(listing)
    listing.set_defaults(run=run_list)


def run_create(args: argparse.Namespace) -> int:
    from pitr.crypto.keys import create_key_file

    kek_id = create_key_file(args.file).hex()
    if args.json:
        print_json({"file": args.file, "key_id": kek_id})
    else:
        print(f"wrote key file {args.file} (key id {kek_id}); keep a copy of it apart from the repository: "
              "without it, an encrypted repository cannot be read")
    return 0


async def run_rotate(args: argparse.Namespace) -> int:
    from pitr.crypto.keys import read_key_file
    from pitr.repo.keyring import rotate_key

    old_path: str | None = args.key_file
    if old_path is None:
        raise InvalidArgument(f"no key opens the repository: pass --key-file FILE or set {KEY_FILE_ENV}")
    old, new = read_key_file(old_path), read_key_file(args.new_key_file)  # both checked before any read
    async with repositories(args) as repos:
        repo = repos[0]
        wrapped = await rotate_key(repo, old, new)
    kek_id = wrapped.block.key_id.hex()
    if args.json:
        print_json({"repository": repo.url, "key_id": kek_id, "object": wrapped.name})
    else:
        print(f"{repo.url}: the key in {args.new_key_file} (key id {kek_id}) now opens the repository "
              f"({wrapped.name}); the data was not rewritten, and earlier keys still open it")
    return 0


async def run_list(args: argparse.Namespace) -> int:
    from pitr.repo.keyring import repository_keys

    async with repositories(args) as repos:
        repo = repos[0]
        keys = await repository_keys(repo)
    rows: list[JSONObject] = [{"key_id": k.block.key_id.hex(), "object": k.name, "created": format_time(k.created_ns),
                               "kdf": "scrypt" if k.block.kdf is not None else None} for k in keys]
    if args.json:
        print_json({"repository": repo.url, "encrypted": bool(keys), "keys": rows})
    elif not keys:
        print(f"{repo.url}: not encrypted")
    else:
        for row in rows:
            kind = "passphrase (scrypt)" if row["kdf"] else "key file"
            print(f"{row['key_id']}  {kind:<19}  added {row['created']}  {row['object']}")
    return 0
