"""Local scratch files of one operation (a staged upload, a download), removed when done or abandoned."""

from __future__ import annotations

import os

from pitr.errors import file_error


def remove_scratch(path: str, what: str) -> None:
    """Remove the scratch file `path` if it is there; any other failure is a FileError naming it
    (`what`: the operation, as "remove the staged upload")."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise file_error(exc, path, what) from exc
