#!/usr/bin/env python3
"""Whole pitr commands, cold, side by side with Redis in the same run (issue 13).

    .venv/bin/python tools/bench/commands.py [--commits N] [--dir DIR] [--json FILE] [--keep]

The workload: N single-key commits (default 1,000,000) of 100-byte values. The
values are `v<9-digit i>` padded with `x`, as compressible as redis-benchmark's
own `xxx...` payload. Commit i writes `key:<i>`, except every (N / 10,000)th
(every other one below 20,000 commits), which writes the hot key `hot`: `hot`
has 10,000 versions and the history N - 10,000 + 1 keys. The import file is
written once, in the work dir.

Each pitr command runs as a whole process (`subprocess`, wall clock, the peak
RSS of the child from `os.wait4`), cold: `os.sync()` and, as root, the page
cache dropped before it. In order: `pitr import FILE` into store A;
`pitr archive` of A into repository R; `pitr verify` of R; `pitr restore
--latest` with verification and with `--no-verify`; `pitr log --json | pitr
import -` into store B; `pitr history hot`; `pitr get --at` (p50/p99 of 2,000
lookups in ONE process through the library: a whole process per lookup would
measure its start-up; a first pass over the page cache as the cold runs left
it, then the same lookups again, warm, which the < 1 ms target applies
to); `pitr snapshot` of A; then N/10 more commits (updates of the first
keys) imported and archived, and `pitr restore --latest` again, now from the snapshot plus that log; the repository's bytes per commit
(segments, snapshots, catalog); `pitr --help`, `pitr get KEY` and `pitr put
KEY V` start-up (the first run, then the median of 5).

Baselines from the same run: redis-server 7 on 127.0.0.1 (`appendonly yes`,
`appendfsync always`), `redis-benchmark -t set -n N -r N -d 100 -P 16 -q`,
the reload of the AOF those SETs wrote (from start until PING and `INFO
persistence` say `loading:0`, cold), AOF bytes per SET, `redis-cli PING`
start-up; zstd decompression plus CRC-32C of R's segment blocks, zstd level 3
of the snapshot's blocks (in process, warm: the raw codec).

It prints one table (figure, pitr, baseline, ratio, the issue's target with ok
or MISSED). A pitr command that fails shows its stderr and the benchmark exits
1 (Redis is stopped either way). Missed targets do not change the exit status:
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

# Run as a script, this directory comes first on sys.path and tools/bench/segments.py would hide
# the segments package: drop it until the packages are imported, then add it back for _common.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
import segments  # noqa: E402, F401  (the package, before tools/bench/segments.py can shadow it)

sys.path.append(_HERE)
from _common import (  # noqa: E402
    CommandFailed,
    ProcessRun,
    cpu_ticks,
    make_cold,
    raw_segment_check_seconds,
    raw_snapshot_compress_seconds,
    run_timed,
    stolen_since,
    work_dir,
)
from _redis import RedisError, RedisServer, require_programs  # noqa: E402

# as on a user's machine, Python caches the bytecode it compiles (this workplace sets PYTHONDONTWRITEBYTECODE,
# which would make every pitr process compile its modules from source)
CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
HOT_VERSIONS = 10_000
LOOKUPS = 2_000
STARTUP_RUNS = 5


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: pitr's figure, the baseline's, their ratio (as the issue states it) and the target."""

    name: str
    pitr: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    values: dict[str, float] = field(default_factory=dict)

    def verdict(self) -> str:
        return "" if self.ok is None else "ok" if self.ok else "MISSED"


def value_of(i: int, tag: str = "v") -> str:
    return f"{tag}{i:09d}".ljust(100, "x")


def write_workload(path: str, commits: int) -> tuple[int, int]:
    """The import file; returns (distinct keys, versions of `hot`)."""
    stride = max(2, commits // HOT_VERSIONS)
    hot = 0
    with open(path, "w") as fh:
        for i in range(commits):
            key = "hot" if i % stride == 0 else f"key:{i:010d}"
            hot += key == "hot"
            fh.write(f'{{"op": "put", "key": "{key}", "value": "{value_of(i)}"}}\n')
    return commits - hot + 1, hot


def key_of(i: int, commits: int) -> str:
    return "hot" if i % max(2, commits // HOT_VERSIONS) == 0 else f"key:{i:010d}"


def write_tail(path: str, commits: int, count: int) -> None:
    """`count` more commits: new values for the keys of the first `count` commits."""
    with open(path, "w") as fh:
        for i in range(count):
            fh.write(f'{{"op": "put", "key": "{key_of(i, commits)}", "value": "{value_of(i, "w")}"}}\n')


def tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _dirs, files in os.walk(path) for name in files)


def mb_per_s(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:,.{0 if size / seconds >= 1e7 else 2}f} MB/s"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


class Bench:
    """One run: the work dir, the pitr command line, the rows measured so far."""

    def __init__(self, root: str, pitr: list[str], commits: int) -> None:
        self.root, self.pitr, self.commits = root, pitr, commits
        self.rows: list[Row] = []
        self.dropped = False
        self.load = os.getloadavg()
        self.scratch = os.path.join(root, "out")
        os.makedirs(self.scratch)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def run(self, *argv: str, then: list[str] | None = None, cold: bool = True) -> ProcessRun:
        if cold:
            self.dropped = make_cold() or self.dropped
        return run_timed([*self.pitr, *argv], scratch=self.scratch, then=then, env=CHILD_ENV)

    def json_of(self, done: ProcessRun) -> dict[str, object]:
        return dict(json.loads(done.stdout))

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f"  ratio {row.ratio:.2f}"
        target = f"  target {row.target} {row.verdict()}" if row.target else ""
        print(f"  {row.name}: {row.pitr}" + (f" | {row.baseline}" if row.baseline else "") + ratio + target,
              flush=True)

    def startup(self, argv: list[str], expect: bytes) -> tuple[float, float, float, float]:
        """(first run, median of the next STARTUP_RUNS, their median CPU time, peak RSS MiB) of `pitr ARGV`."""
        times, cpu, rss = [], [], 0.0
        for i in range(STARTUP_RUNS + 1):
            done = self.run(*argv, cold=i == 0)
            if not done.stdout.startswith(expect):
                raise CommandFailed(f"`pitr {' '.join(argv)}` printed {done.stdout[:200]!r}, expected {expect!r}")
            times.append(done.seconds)
            cpu.append(done.cpu_seconds)
            rss = max(rss, done.peak_rss_mb)
        return times[0], statistics.median(times[1:]), statistics.median(cpu[1:]), rss


def measure_redis(bench: Bench, programs: dict[str, str], when: str) -> dict[str, float]:
    """SET rate, AOF bytes per SET, redis-cli start-up, and the cold AOF reload of the same SETs."""
    directory = bench.path(f"redis-{when}")
    os.makedirs(directory)
    with RedisServer(directory, programs) as server:
        server.start()
        sets = server.set_rate(bench.commits)
        keys = server.dbsize()
        first, median = server.cli_start_seconds(STARTUP_RUNS)
        server.shutdown()
        aof = server.aof_bytes()
        bench.dropped = make_cold() or bench.dropped
        reload_s = server.start()
        logged = server.logged_load_seconds()
        if server.dbsize() != keys:
            raise RedisError(f"the AOF reload holds {server.dbsize()} keys, not the {keys} written")
        server.shutdown()
    print(f"  redis ({when}): {sets:,.0f} SET/s, {keys:,} keys, AOF {aof / bench.commits:.1f} B/SET, reload "
          f"{reload_s:.2f} s (its log: {logged if logged is not None else '?'} s loading), redis-cli {ms(median)}",
          flush=True)
    return {"set_per_s": sets, "keys": keys, "aof_bytes": aof, "reload_s": reload_s, "cli_first_s": first,
            "cli_median_s": median, "reload_logged_s": float("nan") if logged is None else logged}


def at_least(name: str, pitr: str, baseline: str, ratio: float, target: float, **values: float) -> Row:
    return Row(name, pitr, baseline, ratio, f">= {target:g}x", ratio >= target, values)


async def lookups(repo_dir: str, commits: int, seed: int) -> tuple[list[float], list[float]]:
    """`get --at` through the library, in this process: LOOKUPS random (key, moment) pairs, seconds each, twice.

    The first pass meets the page cache as the cold run left it (blocks and catalog pages read from disk);
    the second asks the same pairs again, warm. Each pass's samples come back sorted.
    """
    from pitr.audit import open_value_reader
    from pitr.repo.repository import open_repository

    rng = random.Random(seed)
    passes: list[list[float]] = [[], []]
    async with open_repository(repo_dir) as repo:
        await repo.sync()
        async with open_value_reader(repo) as reader:
            window = reader.timeline.windows[-1]
            pairs = [(key_of(rng.randrange(commits), commits).encode(), rng.randrange(window.start_ns, window.end_ns))
                     for _ in range(LOOKUPS)]
            for samples in passes:
                for key, ts in pairs:
                    started = time.perf_counter()
                    await reader.value_at(key, reader.moment(ts))
                    samples.append(time.perf_counter() - started)
    return sorted(passes[0]), sorted(passes[1])


def measure_pitr(bench: Bench, redis: dict[str, float], seed: int) -> None:
    n = bench.commits
    data_a, data_b, repo = bench.path("store-a"), bench.path("store-b"), bench.path("repo")
    workload = bench.path("import.jsonl")
    keys, hot = write_workload(workload, n)
    sets, reload_s = redis["set_per_s"], redis["reload_s"]
    set_text, reload_text = f"redis SET -P 16: {sets:,.0f}/s", f"AOF reload: {reload_s:.2f} s"

    done = bench.run("import", workload, "--data", data_a, "--json")
    if bench.json_of(done).get("commits") != n:
        raise CommandFailed(f"pitr import reported {done.stdout[:200]!r}, expected {n} commits")
    rate = n / done.seconds
    bench.add(at_least("pitr import FILE (durable)", f"{rate:,.0f} commits/s ({done.seconds:.1f} s, "
                       f"{done.peak_rss_mb:,.0f} MiB)", set_text, rate / sets, 1.0, seconds=done.seconds,
                       rss_mb=done.peak_rss_mb))

    done = bench.run("archive", "--data", data_a, "--repo", repo, "--json")
    bench.add(Row("pitr archive", f"{done.seconds:.2f} s ({n / done.seconds:,.0f} commits/s, "
                  f"{done.peak_rss_mb:,.0f} MiB)", values={"seconds": done.seconds, "rss_mb": done.peak_rss_mb}))
    segment_dir = os.path.join(repo, "segments")
    segment_paths = sorted(os.path.join(segment_dir, name) for name in os.listdir(segment_dir))

    done = bench.run("verify", "--repo", repo, "--json")
    raw_bytes, raw_s = raw_segment_check_seconds(segment_paths)
    bench.add(at_least("pitr verify", f"{done.seconds:.2f} s ({mb_per_s(raw_bytes, done.seconds)})",
                       f"zstd -d + CRC-32C: {mb_per_s(raw_bytes, raw_s)}", raw_s / done.seconds, 0.7,
                       seconds=done.seconds, raw_s=raw_s, rss_mb=done.peak_rss_mb))

    for name, flags in (("pitr restore --latest (verified)", []), ("pitr restore --latest --no-verify",
                                                                    ["--no-verify"])):
        dest = bench.path(f"restored-{len(bench.rows)}")
        done = bench.run("restore", "--latest", "--repo", repo, "--dest", dest, "--json", *flags)
        got = bench.json_of(done)
        if got.get("keys") != keys or got.get("lsn") != n:
            raise CommandFailed(f"{name} restored {got.get('keys')} keys at LSN {got.get('lsn')}, expected "
                                f"{keys} at {n}")
        row = Row(name, f"{done.seconds:.2f} s ({n / done.seconds:,.0f} commits/s, {done.peak_rss_mb:,.0f} MiB)",
                  reload_text, reload_s / done.seconds, values={"seconds": done.seconds, "rss_mb": done.peak_rss_mb})
        if not flags:
            row = at_least(row.name, row.pitr, row.baseline, reload_s / done.seconds, 1.5, **row.values)
        bench.add(row)

    done = bench.run("log", "--json", "--repo", repo, then=[*bench.pitr, "import", "-", "--data", data_b, "--json"])
    if bench.json_of(done).get("commits") != n:
        raise CommandFailed(f"pitr log --json | pitr import - reported {done.stdout[:200]!r}, expected {n}")
    rate = n / done.seconds
    bench.add(at_least("pitr log --json | pitr import -", f"{rate:,.0f} commits/s ({done.seconds:.1f} s)",
                       set_text, rate / sets, 1.0, seconds=done.seconds, rss_mb=done.peak_rss_mb))

    done = bench.run("history", "hot", "--repo", repo, "--json")
    versions = done.stdout.count(b'"lsn"')
    if versions != hot:
        raise CommandFailed(f"pitr history hot listed {versions} versions, expected {hot}")
    bench.add(Row(f"pitr history of a {hot:,}-version key", f"{done.seconds:.2f} s", target="< 1 s",
                  ok=done.seconds < 1.0, values={"seconds": done.seconds}))

    import trio

    cold, warm = trio.run(lookups, repo, n, seed)
    for label, samples in (("first pass, cold page cache", cold), ("same lookups again, warm", warm)):
        p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
        warm_pass = samples is warm
        bench.add(Row(f"get --at p50 / p99 ({LOOKUPS:,} lookups in one process, {label})",
                      f"{p50 * 1e3:.3f} / {p99 * 1e3:.3f} ms", target="p99 < 1 ms" if warm_pass else "",
                      ok=p99 < 0.001 if warm_pass else None, values={"p50_s": p50, "p99_s": p99}))

    done = bench.run("snapshot", "--data", data_a, "--repo", repo, "--json")
    snapshot = os.path.join(repo, "snapshots", str(bench.json_of(done)["name"]))
    logical, raw_s = raw_snapshot_compress_seconds(snapshot)
    bench.add(at_least("pitr snapshot", f"{done.seconds:.2f} s ({mb_per_s(logical, done.seconds)})",
                       f"zstd -3: {mb_per_s(logical, raw_s)}", raw_s / done.seconds, 0.7,
                       seconds=done.seconds, raw_s=raw_s, rss_mb=done.peak_rss_mb))

    tail = n // 10
    write_tail(bench.path("tail.jsonl"), n, tail)
    bench.run("import", bench.path("tail.jsonl"), "--data", data_a, "--json")
    bench.run("archive", "--data", data_a, "--repo", repo, "--json")
    dest = bench.path("restored-snapshot")
    done = bench.run("restore", "--latest", "--repo", repo, "--dest", dest, "--json")
    got = bench.json_of(done)
    if got.get("keys") != keys or got.get("lsn") != n + tail or got.get("base_lsn") != n:
        raise CommandFailed(f"restore from the snapshot: {done.stdout[:300]!r}; expected {keys} keys at LSN "
                            f"{n + tail} from base LSN {n}")
    bench.add(at_least(f"pitr restore --latest (snapshot at {n:,} + {tail:,} commits)",
                       f"{done.seconds:.2f} s ({done.peak_rss_mb:,.0f} MiB)", reload_text,
                       reload_s / done.seconds, 1.5, seconds=done.seconds, rss_mb=done.peak_rss_mb))

    total = n + tail
    split = {part: tree_bytes(os.path.join(repo, part)) for part in ("segments", "snapshots", ".catalog")}
    everything = tree_bytes(repo)
    aof_per_set = redis["aof_bytes"] / n
    per_commit = everything / total
    bench.add(Row("repository bytes per commit", f"{per_commit:.1f} B (segments {split['segments'] / total:.1f}, "
                  f"snapshots {split['snapshots'] / total:.1f}, catalog {split['.catalog'] / total:.1f})",
                  f"AOF {aof_per_set:.1f} B/SET", per_commit / aof_per_set, "<= 0.5x",
                  per_commit <= 0.5 * aof_per_set,
                  {"bytes": everything, **{f"{k.strip('.')}_bytes": v for k, v in split.items()}}))

    last = n - 1 if key_of(n - 1, n) != "hot" else n - 2  # a key the tail did not update
    for name, argv, expect in (("pitr --help", ["--help"], b"usage: pitr"),
                               ("pitr get KEY", ["get", key_of(last, n), "--data", data_a], value_of(last).encode()),
                               ("pitr put KEY V", ["put", "startup", "v", "--data", data_a], b"committed LSN")):
        first, median, cpu, rss = bench.startup(argv, expect)
        bench.add(Row(f"{name} start-up", f"{ms(median)} median of {STARTUP_RUNS} (CPU {ms(cpu)}; first {ms(first)}; "
                      f"{rss:,.0f} MiB)", f"redis-cli PING: {ms(redis['cli_median_s'])}", target="<= 150 ms",
                      ok=median <= 0.150, values={"first_s": first, "median_s": median, "cpu_s": cpu,
                                                  "rss_mb": rss}))


def print_table(bench: Bench, steal_pct: float, redis: dict[str, float], redis_end: dict[str, float]) -> None:
    print(f"\n{bench.commits:,} commits; page cache {'dropped' if bench.dropped else 'NOT dropped (not root)'} "
          f"before each cold run; CPU stolen by the hypervisor during the run: {steal_pct:.0f}%; load average "
          f"(1 min) at the start / end: {bench.load[0]:.1f} / {os.getloadavg()[0]:.1f}; Redis at the "
          f"start / end of the run: {redis['set_per_s']:,.0f} / {redis_end['set_per_s']:,.0f} SET/s, AOF reload "
          f"{redis['reload_s']:.2f} / {redis_end['reload_s']:.2f} s (the ratios use the start's)\n")
    print("| command | pitr | baseline, same run | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in bench.rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        cells = [row.name, row.pitr, row.baseline, ratio, f"{row.target} {row.verdict()}".strip()]
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1_000_000, help="commits in the workload (default 1M)")
    parser.add_argument("--dir", default=None, help="parent of the work dir (default: the system temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--seed", type=int, default=None, help="seed of the get --at lookups (printed)")
    args = parser.parse_args()
    if args.commits < HOT_VERSIONS:
        parser.error(f"--commits must be at least {HOT_VERSIONS:,}")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    bindir = os.path.dirname(sys.executable)
    script = os.path.join(bindir, "pitr")
    pitr = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "pitr"]
    print(f"commands: {args.commits:,} commits, pitr = {' '.join(pitr)}, seed {seed}", flush=True)
    started, steal = time.perf_counter(), cpu_ticks()
    try:
        programs = require_programs()
        with work_dir(args.dir, "pitr-bench-commands-", keep=args.keep) as root:
            bench = Bench(root, pitr, args.commits)
            redis = measure_redis(bench, programs, "start")
            measure_pitr(bench, redis, seed)
            # again at the end: the ratios use the start's figures; this shows how far the host's load moved them
            redis_end = measure_redis(bench, programs, "end")
    except (CommandFailed, RedisError) as exc:
        print(f"commands: FAILED: {exc}", file=sys.stderr)
        return 1
    steal_pct = stolen_since(steal)
    print_table(bench, steal_pct, redis, redis_end)
    missed = [row.name for row in bench.rows if row.ok is False]
    print(f"\ntotal {time.perf_counter() - started:.0f} s; "
          + (f"targets missed: {', '.join(missed)}" if missed else "all targets met"), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"commits": args.commits, "seed": seed, "steal_pct": steal_pct, "cache_dropped": bench.dropped,
                       "redis": redis, "redis_end": redis_end, "rows": [asdict(row) for row in bench.rows]},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
