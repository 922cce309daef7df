"""Build of the compiled replay loop (segments/_block_replay.pyx), from source, at install time.

Everything else about the package is in pyproject.toml. `pip install -e .` (which `make
.venv/.installed` runs) compiles it with the system C compiler; segments/block_replay.py holds
the pure-Python reference it must agree with.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("segments._block_replay", ["segments/_block_replay.pyx"], include_dirs=["segments"],
                   extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    ),
)
