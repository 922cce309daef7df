"""segments.crc: the one CRC-32C of pitr and segments, compiled when built and the crc32c package otherwise.

The crc32c package is the reference: the compiled function must give its answer for every input it
takes (bytes, bytearray, memoryview slices, a continued CRC, inputs past the size where the GIL is
released), with the CPU instruction and with the table. Every module of pitr and segments gets its
CRC from segments.crc, so that no command pays for `import crc32c` (importlib.metadata, email, ...).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import crc32c as reference
from hypothesis import given
from hypothesis import strategies as st

import segments.crc
from segments import _crc as compiled  # built by `pip install -e .`: a missing build fails here

ROOT = Path(__file__).resolve().parents[2]


@given(st.binary(max_size=600), st.integers(0, 2**32 - 1), st.booleans())
def test_the_compiled_crc32c_is_the_packages(data: bytes, value: int, hardware: bool) -> None:
    expected = reference.crc32c(data, value)
    assert compiled.crc32c(data, value, hardware) == expected
    assert compiled.crc32c(bytearray(data), value, hardware) == expected
    assert compiled.crc32c(memoryview(b"xx" + data + b"y")[2:-1], value, hardware) == expected
    assert compiled.crc32c(data) == reference.crc32c(data)


@given(st.binary(max_size=200), st.binary(max_size=200), st.booleans())
def test_a_continued_crc_is_the_crc_of_the_joined_bytes(first: bytes, second: bytes, hardware: bool) -> None:
    joined = compiled.crc32c(first + second, 0, hardware)
    assert compiled.crc32c(second, compiled.crc32c(first, 0, hardware), hardware) == joined
    assert joined == reference.crc32c(first + second)


@given(st.integers(32_760, 70_000), st.integers(0, 255), st.integers(0, 2**32 - 1), st.booleans())
def test_inputs_past_the_gil_threshold(size: int, fill: int, value: int, hardware: bool) -> None:
    # from 32 KiB on the CRC runs without the GIL: same answer, bytes and buffers alike
    data = bytes([fill]) * (size - 1) + b"\x01"
    expected = reference.crc32c(data, value)
    assert compiled.crc32c(data, value, hardware) == expected
    assert compiled.crc32c(memoryview(bytearray(data)), value, hardware) == expected


def test_the_known_vectors() -> None:
    # RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of 0xFF, and 0..31
    for data, crc in ((bytes(32), 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43), (bytes(range(32)), 0x46DD794E),
                      (b"123456789", 0xE3069283), (b"", 0)):
        assert compiled.crc32c(data) == compiled.crc32c(data, 0, False) == segments.crc.crc32c(data) == crc


def test_what_is_not_a_contiguous_buffer_is_refused() -> None:
    for bad in ("text", 7, None, memoryview(bytes(8))[::2]):
        try:
            compiled.crc32c(bad)
        except (TypeError, BufferError):
            continue
        raise AssertionError(f"crc32c({bad!r}) was accepted")


def test_segments_crc_is_the_compiled_function_when_built() -> None:
    assert segments.crc.COMPILED
    assert segments.crc.crc32c is compiled.crc32c


def test_without_the_extension_the_package_serves_and_ci_refuses() -> None:
    probe = ("import sys; sys.modules['segments._crc'] = None\n"
             "import crc32c, segments.crc\n"
             "print(segments.crc.COMPILED, segments.crc.crc32c is crc32c.crc32c, segments.crc.crc32c(b'123456789'))\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    out = subprocess.run([sys.executable, "-W", "error", "-c", probe], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True", str(0xE3069283)]
    ci = subprocess.run([sys.executable, "-c", probe], env={**env, "CI": "true"}, capture_output=True, text=True)
    assert ci.returncode != 0
    assert "segments._crc is not built" in ci.stderr


def test_pitr_and_segments_get_their_crc_from_segments_crc() -> None:
    # one place decides which CRC-32C runs: an `import crc32c` anywhere else brings back its start-up cost
    offenders = []
    for package in ("pitr", "segments"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "segments" / "crc.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for name in names
                              if name.split(".")[0] == "crc32c"]
    assert offenders == [], "import segments.crc's crc32c instead:\n" + "\n".join(offenders)
