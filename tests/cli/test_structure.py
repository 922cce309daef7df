"""The command line's shape: subcommand modules import none of each other, and `pitr --help` stays light.

Start-up (issue 13): a run imports only the subcommand it runs; `pitr --help` and `pitr get --help` import
no heavy dependency, `pitr get KEY` starts no event loop, and `import pitr` imports its names on first use
without changing what they are.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pitr.cli
from pitr.cli.main import COMMANDS, build_parser

CLI_DIR = Path(pitr.cli.__file__).parent
HEAVY = ("boto3", "botocore", "httpx", "httpcore", "cryptography", "rich")


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (`from pitr.cli import x` counts as x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_cli_module_imports_a_subcommand_module() -> None:
    subcommands = {module for module, _help in COMMANDS.values()}
    assert len(subcommands) == len(COMMANDS) > 10
    offenders = {path.name: sorted(_imported_modules(path) & subcommands)
                 for path in sorted(CLI_DIR.glob("*.py")) if path.name != "main.py"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_building_the_parser_imports_no_heavy_dependency() -> None:
    # a fresh interpreter: this test process has long imported boto3 and httpx for other tests
    probe = ("import json, sys; from pitr.cli.main import build_parser; build_parser(); "
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_the_table_of_subcommands_is_what_each_module_registers() -> None:
    # `pitr --help` lists the table without importing the modules; the modules' own help must be the same
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    registered = {action.dest: action.help for action in sub._choices_actions}
    assert registered == {name: help_text for name, (_module, help_text) in COMMANDS.items()}
    assert parser.format_help() == build_parser(only="").format_help()


# what a command that does not need it must not import: the event loop, LMDB, the codecs, the S3 and etcd clients
NOT_AT_START = ("trio", "anyio", "lmdb", "zstandard", "blake3", "boto3", "botocore", "httpx", "httpcore",
                "pitr.sources.etcd", "pitr.archiver", "pitr.restore", "pitr.catalog")


def _modules_after(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has imported after running `pitr ARGV` (its output discarded)."""
    probe = ("import contextlib, io, json, sys\n"
             "from pitr.cli.main import main\n"
             "buf = io.BytesIO()\n"
             "out = io.TextIOWrapper(buf, write_through=True)\n"
             "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
             "    try:\n"
             f"        main({argv!r})\n"
             "    except SystemExit as exc:\n"
             "        code = exc.code\n"
             "print(json.dumps({'code': code, 'out': buf.getvalue().decode(), 'modules': sorted(sys.modules)}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    found = json.loads(done.stdout)
    assert found["code"] == 0, found["out"]
    return set(found["modules"])


def _heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in names))


@pytest.mark.parametrize("argv", [["--help"], ["get", "--help"], ["put", "--help"], ["delete", "--help"]])
def test_help_imports_no_heavy_dependency(argv: list[str]) -> None:
    modules = _modules_after(argv)
    assert "pitr.cli.main" in modules
    assert _heavy(modules, NOT_AT_START) == []


def test_the_top_level_help_imports_no_subcommand_nor_their_shared_code() -> None:
    modules = _modules_after(["--help"])
    assert sorted(m for m in modules if m.startswith("pitr.")) == ["pitr.cli", "pitr.cli.main"]


def test_help_imports_only_the_subcommand_it_shows() -> None:
    modules = _modules_after(["get", "--help"])
    assert "pitr.cli.get" in modules
    assert sorted(m for m, _help in COMMANDS.values() if m in modules) == ["pitr.cli.get"]


def test_get_of_a_live_key_starts_no_event_loop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "pitr", "put", "k", "v", "--data", str(data)], check=True,
                   capture_output=True)
    modules = _modules_after(["get", "k", "--data", str(data)])
    assert "pitr.datadir.reader" in modules  # it did read the key
    assert _heavy(modules, ("trio", "anyio", "boto3", "botocore", "httpx", "pitr.sources.etcd", "pitr.archiver",
                            "pitr.restore", "pitr.catalog")) == []


def test_importing_pitr_is_light_and_its_names_keep_their_meaning() -> None:
    # `pitr.restore` and `pitr.archiving` are functions named like their modules: importing the module first
    # (as any `pitr.restore.x` import does) must not turn the package's name into the module
    probe = ("import json, sys, types\n"
             "import pitr\n"
             "light = sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'anyio', 'lmdb', 'zstandard'))\n"
             "import pitr.restore.engine, pitr.archiving\n"
             "from pitr.restore import restore\n"
             "from pitr.archiving import archiving\n"
             "print(json.dumps({'light': light, 'restore': pitr.restore is restore,\n"
             "                  'archiving': pitr.archiving is archiving,\n"
             "                  'backup': isinstance(pitr.backup, types.ModuleType),\n"
             "                  'names': [n for n in pitr.__all__ if not hasattr(pitr, n)],\n"
             "                  'dir': sorted(set(pitr.__all__) - set(dir(pitr)))}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"light": [], "restore": True, "archiving": True, "backup": True,
                                       "names": [], "dir": []}


def test_both_packages_ship_py_typed() -> None:
    import segments

    for package in (pitr, segments):
        assert (Path(package.__file__).parent / "py.typed").is_file(), package.__name__
