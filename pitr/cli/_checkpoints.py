"""The command line's side of signed checkpoints: `pitr archive --signing-key/--witness/--checkpoint-interval`
and `pitr verify --witness` (pitr/archiver/checkpoints.py, pitr/verify/checkpoints.py)."""

from __future__ import annotations

import argparse
import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from pitr.errors import InvalidArgument

if TYPE_CHECKING:
    from pitr.archiver.checkpoints import CheckpointWriter
    from pitr.repo.witness import Witness

SIGNING_KEY_ENV = "PITR_SIGNING_KEY"


def add_archive_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signing-key", metavar="FILE", default=os.environ.get(SIGNING_KEY_ENV) or None,
                        help="sign a checkpoint after each watermark with this raw key file (`pitr key create "
                             f"FILE`), into the repository and every --witness (default: ${SIGNING_KEY_ENV})")
    parser.add_argument("--witness", action="append", default=[], metavar="DIR|s3://BUCKET/PREFIX",
                        help="also keep the signed checkpoints here, out of reach of the repository's writers "
                             "(repeat for several); needs --signing-key")
    parser.add_argument("--checkpoint-interval", type=float, default=None, metavar="SECONDS",
                        help="at most one checkpoint this often while following (default 60; the first of a "
                             "run at once)")


def add_verify_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--witness", metavar="DIR|s3://BUCKET/PREFIX", default=None,
                        help="check that the repository holds every LSN this witness's signed checkpoints "
                             "reached, with the signed chain digests (rollback, rewrite, replaced identity)")


def add_restore_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--witness", metavar="DIR|s3://BUCKET/PREFIX", default=None,
                        help="first check the repository against this witness's signed checkpoints, and restore "
                             "nothing from one that was rolled back, rewritten or given another identity")


async def checkpoint_writer(args: argparse.Namespace, stack: AsyncExitStack) -> CheckpointWriter | None:
    """The archiver's checkpoint writer the flags ask for (None: no --signing-key), its witnesses opened
    on `stack`. A witness or an interval without a signing key is refused rather than ignored."""
    if args.signing_key is None:
        if args.witness or args.checkpoint_interval is not None:
            raise InvalidArgument("--witness and --checkpoint-interval need --signing-key FILE (or "
                                  f"${SIGNING_KEY_ENV}): checkpoints are signed, and an unsigned one proves nothing")
        return None
    from pitr.archiver.checkpoints import DEFAULT_INTERVAL, CheckpointWriter
    from pitr.repo.checkpoints import SigningKey
    from pitr.repo.witness import open_witness

    interval = DEFAULT_INTERVAL if args.checkpoint_interval is None else args.checkpoint_interval
    if not interval >= 0:
        raise InvalidArgument(f"--checkpoint-interval must be 0 or more seconds, got {interval:g}")
    key = SigningKey.from_file(args.signing_key)
    repos = tuple(args.repo or ([args._repo_env] if args._repo_env else []))
    witnesses = [await stack.enter_async_context(open_witness(url, create=True, s3_endpoint=args.s3_endpoint,
                                                              repository_urls=repos))
                 for url in args.witness]
    return CheckpointWriter(key, witnesses, interval=interval)


async def verify_witness(args: argparse.Namespace, stack: AsyncExitStack) -> Witness | None:
    if args.witness is None:
        return None
    from pitr.repo.witness import open_witness

    repos = tuple(args.repo or ([args._repo_env] if args._repo_env else []))
    return await stack.enter_async_context(open_witness(args.witness, create=False, s3_endpoint=args.s3_endpoint,
                                                        repository_urls=repos))
