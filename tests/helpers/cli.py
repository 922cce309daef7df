"""Running the `pitr` entry point in-process, as a user runs it, with its exit code and output."""

from __future__ import annotations

import pytest

from pitr.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`pitr ARGV`: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    assert isinstance(exc.value.code, int)
    return exc.value.code, out, err
