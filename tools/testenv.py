#!/usr/bin/env python3
"""Ensure the system packages the test suite needs are installed.

The Makefile runs this before the tests. Today the only system dependency is
the etcd server (Debian package ``etcd-server``), used by the integration
tests under ``tests/etcd``.

Behaviour:
- already installed: print nothing, exit 0 (quick and idempotent);
- missing and running as root: ``apt-get update`` once, then
  ``apt-get install -y`` the missing packages;
- missing and not root: print the exact command to run; exit 1 when
  ``CI=true`` (CI must not silently skip the integration tests), else exit 0
  with a warning (the etcd tests then skip with the same command).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def main() -> int:
    missing = [dep for dep in DEPENDENCIES if find_program(dep) is None]
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
    if running_in_ci():
        print(message, file=sys.stderr)
        return 1
    print(message + "\ntestenv: warning: the integration tests that need it will be skipped",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
