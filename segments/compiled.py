"""Loading a compiled loop: the extension module built at install time, or None for its reference.

Every compiled module (segments._block_replay, pitr.datadir._rowcodec, …) has a pure-Python
reference beside it that tests compare it with. Without a C compiler at install time the
reference runs instead, saying what is slower; under CI (`CI=true`) a missing build is an error,
so that the suite never passes on the references alone.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType


def compiled_module(name: str, slower: str | None) -> ModuleType | None:
    """The compiled module `name`, or None when it is not built (RuntimeError under CI=true); with
    `slower`, a RuntimeWarning says what then runs in pure Python, several times slower."""
    try:
        return importlib.import_module(name)  # compiled: no stubs
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"the compiled module {name} is not built; reinstall pitr "
                               "(pip install -e .) with a C compiler present") from exc
        if slower is not None:
            warnings.warn(f"{name} is not built (no C compiler at install time?): {slower}, several times "
                          "slower; reinstall pitr to build it", RuntimeWarning, stacklevel=3)
        return None
