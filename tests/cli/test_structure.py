"""The command line's shape: subcommand modules import none of each other, and `pitr --help` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pitr.cli
from pitr.cli.main import COMMANDS

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
    subcommands = {module.__name__ for module in COMMANDS}
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


def test_both_packages_ship_py_typed() -> None:
    import segments

    for package in (pitr, segments):
        assert (Path(package.__file__).parent / "py.typed").is_file(), package.__name__
