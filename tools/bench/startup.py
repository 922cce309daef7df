#!/usr/bin/env python3
"""Start-up of `pitr --help`, `pitr get KEY` and `pitr put KEY V`, optionally against another tree, interleaved.

    .venv/bin/python tools/bench/startup.py [--against DIR] [--runs 5] [--commits 2000]

Each command is a whole process (from a small launcher, as in commands.py):
the first run cold (`os.sync()`, page cache dropped when root), then the
median wall clock and CPU time (user + system) of `--runs` more. The store is
`--commits` commits (default 2,000) imported into a temporary directory; at
200,000 or 1,000,000 it shows what the writer's open costs with a long WAL. With `--against DIR` (a
directory holding another version's `pitr/` and `segments/`, for instance
`git archive 69d671a pitr segments | tar -x -C DIR`), each run of this tree
is followed by the same run of that one (put on the front of PYTHONPATH), so
both see the same host load. When DIR is a checkout with its own installed
virtualenv (`DIR/.venv/bin/pitr`, as `make .venv/.installed` builds in a clone
of another commit), that install runs instead, so its installation (compiled
modules, the editable install's import hook) is compared too. The first row,
`python -c pass` with each interpreter, is the floor no command goes under.
Target (issue 13): 150 ms, whole process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
sys.path.append(_HERE)
from _common import ProcessRun, make_cold, run_timed, work_dir  # noqa: E402

COMMITS = 2_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="DIR", help="a tree with another version's pitr/ and segments/")
    parser.add_argument("--runs", type=int, default=5, help="warm runs after the first (default 5)")
    parser.add_argument("--commits", type=int, default=COMMITS, help=f"commits in the store (default {COMMITS:,})")
    args = parser.parse_args()
    # bytecode is cached, as on a user's machine; PYTHONPATH is ours to set
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    # tree name -> (its environment, its pitr command, its interpreter)
    trees = {"this tree": (env, _pitr_of(sys.executable), sys.executable)}
    if args.against:
        other = os.path.join(os.path.abspath(args.against), ".venv", "bin", "python")
        if os.access(other, os.X_OK):
            trees[args.against] = (env, _pitr_of(other), other)
        else:
            trees[args.against] = (dict(env, PYTHONPATH=os.path.abspath(args.against)), _pitr_of(sys.executable),
                                   sys.executable)
    with work_dir(None, "pitr-bench-startup-") as root:
        scratch = os.path.join(root, "out")
        os.makedirs(scratch)
        lines = os.path.join(root, "import.jsonl")
        with open(lines, "w") as fh:
            fh.writelines(f'{{"op": "put", "key": "key:{i}", "value": "v{i:09d}"}}\n' for i in range(args.commits))
        data = {name: os.path.join(root, f"data-{i}") for i, name in enumerate(trees)}
        for name, (tree_env, pitr, _python) in trees.items():
            run_timed([*pitr, "import", lines, "--data", data[name]], env=tree_env, scratch=scratch)
        print(f"start-up at {args.commits:,} commits, {args.runs} warm runs after a cold one; "
              f"host load {os.getloadavg()[0]:.1f}")
        for command in (["python -c pass"], ["--help"], ["get", "key:7"], ["put", "startup", "v"]):
            runs: dict[str, list[ProcessRun]] = {name: [] for name in trees}
            for i in range(args.runs + 1):
                for name, (tree_env, pitr, python) in trees.items():
                    if i == 0:
                        make_cold()
                    if command == ["python -c pass"]:
                        argv = [python, "-c", "pass"]
                    elif command == ["--help"]:
                        argv = [*pitr, *command]
                    else:
                        argv = [*pitr, *command, "--data", data[name]]
                    runs[name].append(run_timed(argv, env=tree_env, scratch=scratch))
            for name, done in runs.items():
                median = statistics.median(r.seconds for r in done[1:])
                cpu = statistics.median(r.cpu_seconds for r in done[1:])
                verdict = "" if command == ["python -c pass"] else "ok" if median <= 0.150 else "MISSED"
                label = command[0] if command == ["python -c pass"] else "pitr " + " ".join(command)
                print(f"  {label:<19} {name:<22} first {done[0].seconds * 1e3:6.0f} ms   median "
                      f"{median * 1e3:6.0f} ms   CPU {cpu * 1e3:5.0f} ms   {verdict}", flush=True)
        print(f"host load at the end {os.getloadavg()[0]:.1f}")
    return 0


def _pitr_of(python: str) -> list[str]:
    """The `pitr` command of the virtualenv `python` belongs to (its script, else `python -m pitr`)."""
    script = os.path.join(os.path.dirname(python), "pitr")
    return [script] if os.access(script, os.X_OK) else [python, "-m", "pitr"]


if __name__ == "__main__":
    sys.exit(main())
