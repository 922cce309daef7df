#!/usr/bin/env python3
"""Ensure the system packages the test suite (and, with ``--bench``, the benchmarks) need are installed.

The Makefile runs this before the tests (``make test``) and, with ``--bench``,
before the benchmarks (``make bench``). The tests need the etcd server
(Debian package ``etcd-server``), used by the integration tests under
``tests/etcd``. The benchmarks also need Redis (``redis-server`` and
``redis-tools``: redis-server, redis-cli, redis-benchmark), the baseline of
``tools/bench/commands.py``; ``make test`` never needs it.

Behaviour:
- already installed: print nothing, exit 0 (quick and idempotent);
- missing and running as root: ``apt-get update`` once, then
  ``apt-get install -y`` the missing packages;
- missing and not root: print the exact command to run; exit 1 when
  ``CI=true`` (CI must not silently skip the integration tests) or when a
  benchmark dependency is missing (a benchmark without its baseline has no
  figure to print), else exit 0 with a warning (the etcd tests then skip with
  the same command).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SystemDependency:
    """A program the tests run, and the Debian package that provides it."""

    program: str
    package: str
    fallback_paths: tuple[str, ...] = ()


DEPENDENCIES = (
    SystemDependency(program="etcd", package="etcd-server", fallback_paths=("/usr/bin/etcd",)),
)

# only `make bench` (tools/bench/commands.py's baseline); never the tests
BENCH_DEPENDENCIES = (
    SystemDependency(program="redis-server", package="redis-server", fallback_paths=("/usr/bin/redis-server",)),
    SystemDependency(program="redis-cli", package="redis-tools", fallback_paths=("/usr/bin/redis-cli",)),
    SystemDependency(program="redis-benchmark", package="redis-tools",
                     fallback_paths=("/usr/bin/redis-benchmark",)),
)


def find_program(dependency: SystemDependency) -> str | None:
    """Return the program's path, looking on PATH and then at the known fallback paths."""
    found = shutil.which(dependency.program)
    if found:
        return found
    for candidate in dependency.fallback_paths:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_command(packages: list[str]) -> str:
    return "sudo apt-get update && sudo apt-get install -y " + " ".join(packages)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def install_packages(packages: list[str]) -> None:
    """Install Debian packages non-interactively (as root)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"testenv: installing {' '.join(packages)} with apt-get", flush=True)
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], check=True, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the system packages the tests need.")
    parser.add_argument("--bench", action="store_true",
                        help="also the benchmarks' (Redis: redis-server, redis-tools)")
    args = parser.parse_args(argv)
    wanted = DEPENDENCIES + (BENCH_DEPENDENCIES if args.bench else ())
    missing = [dep for dep in wanted if find_program(dep) is None]
    if not missing:
        return 0
    packages = sorted({dep.package for dep in missing})
    programs = ", ".join(dep.program for dep in missing)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            install_packages(packages)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"testenv: installing {' '.join(packages)} failed: {exc}", file=sys.stderr)
            return 1
        still_missing = [dep.program for dep in missing if find_program(dep) is None]
        if still_missing:
            print(f"testenv: {', '.join(still_missing)} still not found after installing "
                  f"{' '.join(packages)}", file=sys.stderr)
            return 1
        return 0
    message = f"testenv: {programs} not found; install with:\n    {install_command(packages)}"
    if running_in_ci() or any(dep in BENCH_DEPENDENCIES for dep in missing):
        print(message, file=sys.stderr)
        return 1
    print(message + "\ntestenv: warning: the integration tests that need it will be skipped",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
