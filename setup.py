"""Build of the compiled loops, from source, at install time: the restore's replay
(segments/_block_replay.pyx), full verification's block scan (segments/_block_scan.pyx), the
state digest's hashing of snapshot entries (segments/_snapshot_codec.pyx), segments.crc's CRC-32C
(segments/_crc.pyx), the state's batch row codec (pitr/datadir/_rowcodec.pyx), a restore's rows
and receipt (pitr/datadir/_build.pyx), the checking pass of `pitr import`
(pitr/cli/_import_scan.pyx), the store's encoding of a run of commits (pitr/store/_run_encode.pyx)
and the lines of `pitr log --json` (pitr/audit/_log_lines.pyx).

Everything else about the package is in pyproject.toml. `pip install -e .` (which `make
.venv/.installed` runs) compiles them with the system C compiler; segments/block_replay.py,
segments/block_scan.py, segments/snapshot_codec.py, segments/crc.py (the crc32c package),
pitr/datadir/rowcodec.py, pitr/datadir/build.py, pitr/cli/import_scan.py, pitr/store/run_encode.py
and pitr/audit/log_lines.py hold the pure-Python references they must agree with.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("segments._block_replay", ["segments/_block_replay.pyx"], include_dirs=["segments"],
                   extra_compile_args=["-O2"]),
         Extension("segments._block_scan", ["segments/_block_scan.pyx"], include_dirs=["segments"],
                   extra_compile_args=["-O2"]),
         Extension("segments._snapshot_codec", ["segments/_snapshot_codec.pyx"], include_dirs=["segments"],
                   extra_compile_args=["-O2"]),
         # segments.crc's CRC-32C (the same C code), so that no command imports the crc32c package
         Extension("segments._crc", ["segments/_crc.pyx"], include_dirs=["segments"], extra_compile_args=["-O2"]),
         # the state's row checks share the CRC-32C code of segments/_block_replay_c.h
         Extension("pitr.datadir._rowcodec", ["pitr/datadir/_rowcodec.pyx"],
                   include_dirs=["pitr/datadir", "segments"], extra_compile_args=["-O2"]),
         # a restore's rows made in key order and read back with the state digest (BLAKE3 in C)
         Extension("pitr.datadir._build", ["pitr/datadir/_build.pyx"],
                   include_dirs=["pitr/datadir", "segments"], extra_compile_args=["-O2"]),
         # the checking pass of `pitr import` over the common line
         Extension("pitr.cli._import_scan", ["pitr/cli/_import_scan.pyx"], extra_compile_args=["-O2"]),
         # a run of commits sequenced and encoded (Store.queue_commits), with the row codec's CRC-32C
         Extension("pitr.store._run_encode", ["pitr/store/_run_encode.pyx"],
                   include_dirs=["pitr/datadir", "segments"], extra_compile_args=["-O2"]),
         # `pitr log --json`'s lines, a checked block at a time
         Extension("pitr.audit._log_lines", ["pitr/audit/_log_lines.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
        include_path=["segments"],  # the .pxi files shared by the loops of both packages
    ),
)
