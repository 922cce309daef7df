"""What every subcommand shares: repository/data options, key encoding, output, progress."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from pitr.errors import InvalidArgument, Window
from pitr.jsonbytes import bytes_from_json, bytes_to_json
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time, parse_duration

if TYPE_CHECKING:
    from pitr.cli.progress import TerminalProgress
    from pitr.repo.repository import Repository
    from pitr.storage.ratelimit import TransferLimits


def add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=os.environ.get("PITR_DATA"),
                        help="store data directory (default: $PITR_DATA)")


def add_repo(parser: argparse.ArgumentParser, *, many: bool = False, required: bool = True) -> None:
    env = os.environ.get("PITR_REPO")
    parser.add_argument("--repo", action="append" if many else "store", default=None,
                        help="repository: a directory, file://DIR or s3://BUCKET/PREFIX"
                             + (" (repeat for several)" if many else "") + " (default: $PITR_REPO)")
    parser.set_defaults(_repo_env=env, _repo_required=required)
    parser.add_argument("--s3-endpoint", default=os.environ.get("PITR_S3_ENDPOINT"),
                        help="endpoint URL of an S3-compatible server")
    parser.add_argument("--cache-dir", default=os.environ.get("PITR_CACHE_DIR"),
                        help="local cache for a remote repository's catalog and downloads")
    parser.add_argument("--key-file", default=os.environ.get("PITR_KEY_FILE") or None,
                        help="key file of an encrypted repository (default: $PITR_KEY_FILE)")
    add_limits(parser)


def add_limits(parser: argparse.ArgumentParser) -> None:
    """--limit-upload / --limit-download: bandwidth caps shared by every remote repository opened."""
    parser.add_argument("--limit-upload", metavar="RATE", default=os.environ.get("PITR_LIMIT_UPLOAD"),
                        help="cap uploads to remote repositories, e.g. 20MiB/s (default: $PITR_LIMIT_UPLOAD)")
    parser.add_argument("--limit-download", metavar="RATE", default=os.environ.get("PITR_LIMIT_DOWNLOAD"),
                        help="cap downloads from remote repositories, e.g. 20MiB/s (default: $PITR_LIMIT_DOWNLOAD)")


def transfer_limits(args: argparse.Namespace) -> TransferLimits:
    """The bandwidth caps the command line asks for (one pair of buckets for the whole command)."""
    from pitr.sizefmt import parse_rate
    from pitr.storage.ratelimit import TransferLimits

    up, down = getattr(args, "limit_upload", None), getattr(args, "limit_download", None)
    return TransferLimits.of(upload=parse_rate(up, what="--limit-upload") if up else None,
                             download=parse_rate(down, what="--limit-download") if down else None)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_wait(parser: argparse.ArgumentParser) -> None:
    """`--wait DURATION`: a writing command waits this long for another writer's lock instead of failing."""
    parser.add_argument("--wait", default="0s", metavar="DURATION",
                        help="when another process is the store's writer, wait up to this long (10s, 2m) for "
                             "it to finish (default: fail at once)")


async def writer_wait(args: argparse.Namespace) -> float:
    """Wait (up to the command's `--wait`) until no other process is the store's writer; returns the
    seconds left of the wait, the `StoreOptions(lock_wait=)` the command opens its store with.

    The wait happens here, on the event loop, so Ctrl-C ends it at once: the store opens its
    lock in a worker thread, which a signal cannot interrupt. The store still waits for what
    remains, for a writer that takes the lock between this check and the open.
    """
    import anyio

    from pitr.datadir.lock import FIRST_BACKOFF, MAX_BACKOFF, lock_holder, locked_error

    wait = parse_duration(args.wait, what="--wait") / 1e9
    data = need_data(args)
    deadline, backoff = anyio.current_time() + wait, FIRST_BACKOFF
    while wait > 0:
        holder = await anyio.to_thread.run_sync(lock_holder, data)
        remaining = deadline - anyio.current_time()
        if holder is None:
            break
        if remaining <= 0:
            raise locked_error(data, holder.pid, wait)
        await anyio.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, MAX_BACKOFF)
    return max(deadline - anyio.current_time(), 0.0)


def need_data(args: argparse.Namespace) -> str:
    if not args.data:
        raise InvalidArgument("no store directory: pass --data DIR or set PITR_DATA")
    return str(args.data)


def check_ranges(args: argparse.Namespace) -> None:
    """Refuse a range that ends before it starts (`--since` after `--until`, `--since-lsn` after `--until-lsn`).

    An empty answer to a backwards range would look like "nothing happened";
    it is an argument error instead, whichever subcommand takes the flags.
    """
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None:
        from pitr.cli.moments import Moments

        moments = Moments()
        first_moment, last_moment = moments.parse(since, "--since"), moments.parse(until, "--until")
        since_ns, until_ns = first_moment.ts_ns, last_moment.ts_ns
        if since_ns is not None and until_ns is not None and since_ns > until_ns:
            raise InvalidArgument(f"--since {since} ({format_time(since_ns)}) is after --until {until} "
                                  f"({format_time(until_ns)}); give the earlier moment as --since")
        if first_moment.lsn is not None and last_moment.lsn is not None and first_moment.lsn > last_moment.lsn:
            raise InvalidArgument(f"--since {since} is after --until {until}; give the smaller LSN as --since")
    first, last = getattr(args, "since_lsn", None), getattr(args, "until_lsn", None)
    if first is not None and last is not None and first > last:
        raise InvalidArgument(f"--since-lsn {first} is after --until-lsn {last}; give the smaller LSN as --since-lsn")


def repo_urls(args: argparse.Namespace) -> list[str]:
    value = args.repo
    if value is None:
        value = args._repo_env
    if value is None:
        raise InvalidArgument("no repository: pass --repo URL or set PITR_REPO")
    urls = value if isinstance(value, list) else [value]
    if isinstance(value, str) and "," in value and value == args._repo_env:
        urls = [u for u in value.split(",") if u]
    return urls


@asynccontextmanager
async def repositories(args: argparse.Namespace, *, create: bool = False,
                       unlock: bool = True) -> AsyncIterator[list[Repository]]:
    """The repositories of --repo, opened, and unlocked with --key-file (unless `unlock` is False:
    `pitr archive --encrypt` checks the key itself, pitr.cli._encrypt)."""
    from pitr.cli._object_lock import check_object_lock, object_lock_of
    from pitr.repo.repository import open_repository  # the catalog, LMDB and the storage backends: only here

    limits = transfer_limits(args)
    lock = object_lock_of(args)  # --object-lock-days, on the commands that offer it
    async with AsyncExitStack() as stack:
        repos = [await stack.enter_async_context(
            open_repository(url, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint, create=create,
                            limits=limits, object_lock=lock))
            for url in repo_urls(args)]
        check_object_lock(repos, lock)
        for repo in repos:
            if repo.catalog.rebuilt_from is not None:
                print(f"pitr: {repo.url}: the catalog had format {repo.catalog.rebuilt_from}, written by an earlier "
                      "pitr; rebuilding it from the repository's files (this happens once)", file=sys.stderr)
        if unlock and getattr(args, "key_file", None):
            from pitr.repo.keyring import unlock_all  # cryptography: only for a key

            await unlock_all(repos, args.key_file)
        yield repos


def decode_arg(text: str, b64: bool, what: str) -> bytes:
    """A command-line key or value: UTF-8 text, or base64 with --b64."""
    if not b64:
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise InvalidArgument(f"{what} {text!r} is not valid base64") from exc


encode_bytes = bytes_to_json  # the JSON form of keys and values (pitr.jsonbytes)


def decode_json_bytes(value: object, what: str) -> bytes:
    """A key or value field of an import line."""
    return bytes_from_json(value, what=what)


def show_bytes(data: bytes) -> str:
    encoded = encode_bytes(data)
    return encoded if isinstance(encoded, str) else "b64:" + encoded["b64"]


def print_json(value: object) -> None:
    """One JSON document on stdout (keys sorted): whatever `json.dumps` takes."""
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_windows(windows: Sequence[Window], where: str = "") -> None:
    """The restorable windows (each once), or that nothing is restorable; `where` names the repository."""
    print(f"  restorable{where}:" if windows else f"  nothing is restorable{where}")
    for w in dict.fromkeys(windows):
        print(f"    {window_text(w)}")


def window_text(w: Window) -> str:
    return f"{format_time(w.start_ns)} .. {format_time(w.end_ns)}  (LSN {w.start_lsn}..{w.end_lsn})"


def window_json(w: Window) -> JSONObject:
    return {"start": format_time(w.start_ns), "end": format_time(w.end_ns), "start_ns": w.start_ns,
            "end_ns": w.end_ns, "start_lsn": w.start_lsn, "end_lsn": w.end_lsn}


def parse_every(values: Sequence[str]) -> tuple[float | None, int | None]:
    """--snapshot-every values: a duration (30m, 1h, 1d) and/or a log volume (512MiB, 1GB)."""
    from pitr.sizefmt import parse_size

    seconds, volume = None, None
    for text in values:
        try:  # a bare number names neither a duration nor a volume: refused below
            if not text.strip().replace(".", "").isdigit():
                seconds = parse_duration(text, what="--snapshot-every") / 1e9
                continue
        except InvalidArgument:
            pass
        try:
            volume = parse_size(text, what="--snapshot-every")
        except InvalidArgument:
            raise InvalidArgument(f"--snapshot-every {text!r}: give a duration like 30m, 6h, 1d or a log "
                                  "volume like 512MiB, 2GB") from None
    return seconds, volume


class Progress:
    """Progress of a long command: a `(phase, done, total)` callable that draws bars on a terminal.

    Silent unless enabled (by default: standard error is a terminal); rich is
    imported at the first report shown, so a command that shows none never
    loads it. `unit` is what `done` counts: "bytes" (restore, verify: the bar
    shows the rate and the time left) or "items".
    """

    def __init__(self, enabled: bool | None = None, *, unit: str = "bytes") -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.unit = unit
        self._display: TerminalProgress | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._display is None:
            from pitr.cli.progress import TerminalProgress

            self._display = TerminalProgress(self.unit)
        self._display.update(phase, done, total)

    def done(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None


def progress_for(args: argparse.Namespace, *, unit: str = "bytes") -> Progress:
    """The command's progress: shown on a terminal (standard error), never under --json."""
    return Progress(False if getattr(args, "json", False) else None, unit=unit)
