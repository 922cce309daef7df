"""Build of the compiled loops (segments/_block_replay.pyx, pitr/datadir/_rowcodec.pyx), from source, at install time.

Everything else about the package is in pyproject.toml. `pip install -e .` (which `make
.venv/.installed` runs) compiles them with the system C compiler; segments/block_replay.py and
pitr/datadir/rowcodec.py hold the pure-Python references they must agree with.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("segments._block_replay", ["segments/_block_replay.pyx"], include_dirs=["segments"],
                   extra_compile_args=["-O2"]),
         # the state's row checks share the CRC-32C code of segments/_block_replay_c.h
         Extension("pitr.datadir._rowcodec", ["pitr/datadir/_rowcodec.pyx"],
                   include_dirs=["pitr/datadir", "segments"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    ),
)
