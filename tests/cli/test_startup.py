"""What `pitr get KEY` and `pitr put KEY V` import (issue 13, item 6: each starts in 150 ms or less).

Start-up is measured by tools/bench/startup.py, never by a timed test; what is pinned here is the
cause: the modules a run loads. A live get and a put run without an event loop, so neither loads
trio or anyio; neither talks to a repository, so neither loads boto3, httpx, cryptography, rich, the
catalog or the archiver; and neither loads what costs start-up for nothing: `logging`, the crc32c
package (its `__init__` imports `importlib.metadata`, which brings email, zipfile, csv and socket:
about 25 ms), or the snapshot codec with zstandard. Each probe is a fresh interpreter that runs the
command through `pitr.cli.main.main` and reports `sys.modules`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pitr.cli import main

# (module, why a get or a put must not import it)
NEVER = {
    "trio": "the event loop: a live get and a put run without one",
    "anyio": "the event loop: a live get and a put run without one",
    "boto3": "the S3 backend: no repository is opened",
    "botocore": "the S3 backend: no repository is opened",
    "httpx": "HTTP: no repository is opened",
    "httpcore": "HTTP: no repository is opened",
    "cryptography": "encryption: no repository is opened",
    "rich": "progress bars: nothing long runs",
    "prometheus_client": "metrics: no archiver runs",
    "crc32c": "the crc32c package: segments.crc uses the compiled CRC-32C",
    "importlib.metadata": "imported by the crc32c package for its __version__ (email, zipfile, csv, socket)",
    "email": "imported by importlib.metadata",
    "zipfile": "imported by importlib.metadata",
    "logging": "imported only when a warning is logged",
    "tempfile": "with shutil and random: only a command that publishes a file needs it",
    "shutil": "argparse's formatter measures the terminal without it (pitr.cli.main.HelpFormatter)",
    "asyncio": "no event loop",
    "zstandard": "no compressed file is read or written",
    "segments.snapshot": "the snapshot codec: the state's rows use their own",
    "pitr.archiver": "no archiving",
    "pitr.archiving": "no archiving",
    "pitr.catalog": "no repository is opened",
    "pitr.repo": "no repository is opened",
    "pitr.storage": "no repository is opened",
    "pitr.restore": "no restore",
    "pitr.snapshots": "no snapshot",
    "pitr.sources": "no etcd",
    "pitr.store.store": "the async Store: a put commits through pitr.store.oneshot",
}

PROBE = """\
import contextlib, io, json, sys
from pitr.cli.main import main
buf = io.BytesIO()
out = io.TextIOWrapper(buf, write_through=True)
code = 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": buf.getvalue().decode(), "modules": sorted(sys.modules)}))
"""


def run_probe(argv: list[str]) -> tuple[int, str, set[str]]:
    """Exit code, output and the modules imported of `pitr ARGV`, run in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True,
                          check=True)
    found = json.loads(done.stdout)
    return found["code"], found["out"], set(found["modules"])


def forbidden(modules: set[str]) -> dict[str, str]:
    return {m: why for m, why in NEVER.items() if any(name == m or name.startswith(m + ".") for name in modules)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("startup") / "data"
    code, out, _ = run_probe(["put", "k", "v1", "--data", str(data)])
    assert code == 0, out
    return data


@pytest.mark.parametrize("extra", [[], ["--json"], ["--ttl", "3600"], ["--b64"]])
def test_put_imports_only_what_one_commit_needs(data: Path, extra: list[str]) -> None:
    key, value = ("aw==", "djI=") if "--b64" in extra else ("k", "v2")  # k and v2, base64
    code, out, modules = run_probe(["put", key, value, "--data", str(data), *extra])
    assert code == 0, out
    assert "committed LSN" in out or '"lsn"' in out
    assert {"pitr.store.oneshot", "segments.crc", "lmdb"} <= modules  # it did commit
    assert forbidden(modules) == {}


@pytest.mark.parametrize(("key", "extra", "expected"), [
    ("k", [], 0), ("k", ["--json"], 0), ("absent", [], 1), ("absent", ["--json"], 1)])
def test_a_live_get_imports_only_what_one_read_needs(data: Path, key: str, extra: list[str],
                                                     expected: int) -> None:
    code, out, modules = run_probe(["get", key, "--data", str(data), *extra])
    assert code == expected, out
    assert "pitr.datadir.reader" in modules  # it did read the key
    assert forbidden(modules) == {}


def test_the_probe_sees_what_a_command_imports(data: Path) -> None:
    # the same probe on a command that does use the event loop and the repository code: the list is not
    # passing because the probe sees nothing
    code, out, modules = run_probe(["delete", "absent", "--data", str(data)])
    assert code == 0, out
    assert {"trio", "anyio", "pitr.store.store"} <= set(forbidden(modules))


@pytest.mark.parametrize("columns", [None, "0", "x", "40", "57", "200"])
def test_the_help_is_what_argparse_formats(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    # pitr's formatter measures the terminal without shutil; the text must be argparse's own, at every width
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert main.terminal_columns() == shutil.get_terminal_size().columns

    def texts() -> list[str]:
        texts = [main.build_parser(only="").format_help()]
        for name in ("get", "put", "restore", "status"):
            parser = main.build_parser(only=name)
            [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            texts.append(sub.choices[name].format_help())
        return texts

    ours = texts()
    monkeypatch.setattr(main.CommandParser, "_get_formatter", argparse.ArgumentParser._get_formatter)
    assert ours == texts()


def test_help_imports_no_shutil() -> None:
    for argv in (["--help"], ["get", "--help"], ["put", "--help"]):
        code, out, modules = run_probe(argv)
        assert code == 0, out
        assert "shutil" not in modules, f"pitr {' '.join(argv)} imported shutil"


@pytest.mark.parametrize(("argv", "listed"), [
    (["get", "k"], False), (["put", "k", "v", "--json"], False), (["get", "--help"], False),
    (["-h", "get"], True), (["--json", "get", "k"], True), (["--", "get", "k"], True), (["bogus"], True), ([], True)])
def test_a_command_line_that_starts_with_its_subcommand_builds_that_one_alone(argv: list[str], listed: bool) -> None:
    [sub] = [a for a in main.parser_for(argv)._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == (set(main.COMMANDS) if listed else {argv[0]})


@pytest.mark.parametrize("argv", [["-h", "get"], ["--help", "put", "k", "v"]])
def test_the_top_level_help_before_a_subcommand_still_lists_them_all(capsys: pytest.CaptureFixture[str],
                                                                    argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["--help"])
    expected = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main.main(argv)
    assert capsys.readouterr().out == expected
    assert all(name in expected for name in main.COMMANDS)
