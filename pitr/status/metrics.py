"""Prometheus metrics of a running archiver (`pitr archive --follow --metrics HOST:PORT`).

Imported only when `--metrics` is given (it imports `prometheus_client`). The
exporter is an observer of the archiver and of the repository watcher: their
notifications update plain numbers on the event loop, and a collector turns
those into metric families when the HTTP thread scrapes (so a scrape never
touches the catalog or the event loop). Names and meanings: docs/operations.md,
"Metrics, heartbeat and events".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pitr.archiver.archiver import Archiver
from pitr.archiver.observe import ArchiveObserver, PublishedSegment, TakenSnapshot
from pitr.errors import InvalidArgument
from pitr.status.records import UploadBacklog, VerifyRecord
from pitr.status.watch import RepoView, WatchObserver


@dataclass(slots=True)
class RepoNumbers:
    """What the exporter knows of one repository (updated on the event loop, read by scrapes)."""

    commits: int = 0
    bytes: int = 0
    segments: int = 0
    lag_seconds: float = 0.0
    archived_lsn: int = 0
    known_complete_ns: int | None = None
    errors: int = 0
    failing: bool = False
    last_success_ns: int | None = None
    gaps: int = 0
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    windows: int = 0
    verify: VerifyRecord | None = None
    events: dict[str, int] = field(default_factory=dict)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`127.0.0.1:9187`, `[::1]:9187`, `:9187` for every address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"--metrics {text!r}: give HOST:PORT, like 127.0.0.1:9187")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsExporter(ArchiveObserver, WatchObserver, Collector):
    """Counts what the archiver does and serves it to Prometheus."""

    def __init__(self, archiver: Archiver, clock: Callable[[], int] = time.time_ns,
                 backlogs: Callable[[], Mapping[str, UploadBacklog]] | None = None) -> None:
        self.archiver = archiver
        self.backlogs = backlogs  # the status recorder's last measurement per repository, when there is one
        self._clock = clock
        self.repos: dict[str, RepoNumbers] = {}
        self.snapshots = 0
        self.last_snapshot_ns: int | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: object = None
        for prog in archiver.progress:  # what the archiver resumed from
            numbers = self._of(prog.repo.url)
            numbers.archived_lsn = prog.last_lsn
            if prog.last_watermark is not None:
                numbers.known_complete_ns = prog.last_watermark[1]

    def _of(self, repo: str) -> RepoNumbers:
        numbers = self.repos.get(repo)
        if numbers is None:
            numbers = self.repos[repo] = RepoNumbers()
        return numbers

    # the archiver's notifications
    def segment_published(self, segment: PublishedSegment) -> None:
        n = self._of(segment.repo)
        n.commits += segment.commits
        n.bytes += segment.size
        n.segments += 1
        n.lag_seconds = segment.lag_ns / 1e9
        n.archived_lsn = segment.last_lsn

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        n = self._of(repo)
        n.known_complete_ns = complete_through_ns
        n.archived_lsn = max(n.archived_lsn, lsn)

    def gap_recorded(self, repo: str, gaps: tuple[tuple[int, int], ...]) -> None:
        self._of(repo).gaps += len(gaps)

    def repository_archived(self, repo: str, lsn: int, now_ns: int) -> None:
        n = self._of(repo)
        n.failing = False
        n.last_success_ns = now_ns

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        n = self._of(repo)
        n.errors += 1
        n.failing = True

    def snapshot_taken(self, snapshot: TakenSnapshot) -> None:
        self.snapshots += 1
        self.last_snapshot_ns = snapshot.ts_ns

    # the watcher's
    def repository_observed(self, view: RepoView) -> None:
        n = self._of(view.repo)
        n.windows = len(view.windows)
        n.window_start_ns = min((w.start_ns for w in view.windows), default=None)
        n.window_end_ns = max((w.end_ns for w in view.windows), default=None)
        n.verify = view.verify

    # serving
    def start(self, listen: str) -> None:
        host, port = parse_listen(listen)
        try:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise InvalidArgument(f"--metrics {listen}: cannot listen there: {exc.strerror or exc}") from exc

    def stop(self) -> None:
        if isinstance(self._server, tuple):
            server = self._server[0]
            server.shutdown()
            server.server_close()
            self._server = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = self._clock()
        rows = list(self.repos.items())
        label = ["repository"]

        def gauge(name: str, doc: str, values: Iterable[tuple[str, float | None]]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=label)
            for repo, value in values:
                if value is not None:
                    family.add_metric([repo], value)
            return family

        def counter(name: str, doc: str, values: Iterable[tuple[str, float]]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=label)
            for repo, value in values:
                family.add_metric([repo], value)
            return family

        def seconds(ns: int | None) -> float | None:
            return None if ns is None else ns / 1e9

        yield gauge("pitr_known_complete_timestamp_seconds", "Time through which the archive is known complete "
                    "(the watermark)", ((r, seconds(n.known_complete_ns)) for r, n in rows))
        yield gauge("pitr_recovery_point_seconds", "Seconds from the known-complete time to now (what a loss now "
                    "would cost)", ((r, None if n.known_complete_ns is None else max(0, now - n.known_complete_ns) / 1e9)
                                    for r, n in rows))
        yield gauge("pitr_archiver_lag_seconds", "From the newest commit of the last published segment to its "
                    "publish", ((r, n.lag_seconds) for r, n in rows))
        yield gauge("pitr_archived_lsn", "The last LSN the repository holds", ((r, n.archived_lsn) for r, n in rows))
        yield counter("pitr_archived_commits", "Commits archived by this process", ((r, n.commits) for r, n in rows))
        yield counter("pitr_archived_bytes", "Segment bytes published by this process", ((r, n.bytes) for r, n in rows))
        yield counter("pitr_segments_published", "Segments published by this process",
                      ((r, n.segments) for r, n in rows))
        yield counter("pitr_archive_errors", "Failed archive attempts (retried with backoff)",
                      ((r, n.errors) for r, n in rows))
        yield gauge("pitr_archive_failing", "1 while the last archive attempt failed",
                    ((r, float(n.failing)) for r, n in rows))
        yield gauge("pitr_last_archive_success_timestamp_seconds", "When a cycle last archived without error",
                    ((r, seconds(n.last_success_ns)) for r, n in rows))
        yield counter("pitr_source_gaps", "Gaps recorded in the source's history", ((r, n.gaps) for r, n in rows))
        yield gauge("pitr_window_start_timestamp_seconds", "Start of the oldest recoverable window",
                    ((r, seconds(n.window_start_ns)) for r, n in rows))
        yield gauge("pitr_window_end_timestamp_seconds", "End of the newest recoverable window",
                    ((r, seconds(n.window_end_ns)) for r, n in rows))
        yield gauge("pitr_windows", "Number of recoverable windows (more than 1: a gap splits the history)",
                    ((r, n.windows) for r, n in rows))
        yield gauge("pitr_last_verify_success", "1 if the last pitr verify passed, 0 if it failed",
                    ((r, None if n.verify is None else float(n.verify.ok)) for r, n in rows))
        yield gauge("pitr_last_verify_timestamp_seconds", "When pitr verify last ran",
                    ((r, None if n.verify is None else n.verify.finished_ns / 1e9) for r, n in rows))
        backlogs = sorted(dict(self.backlogs()).items()) if self.backlogs is not None else []
        yield gauge("pitr_upload_backlog_commits", "Durable commits not yet in the repository (as last measured)",
                    ((r, b.commits) for r, b in backlogs))
        yield gauge("pitr_upload_backlog_bytes", "Their bytes (estimated; at least what the upload cap holds back)",
                    ((r, b.bytes) for r, b in backlogs))
        yield gauge("pitr_upload_cap_bytes_per_second", "The upload cap on the repository (absent: no cap)",
                    ((r, b.cap_bytes_per_s) for r, b in backlogs))
        yield gauge("pitr_upload_cap_cost_seconds", "What the upload cap adds to the recovery point: the backlog's "
                    "bytes over the cap", ((r, b.cap_cost_seconds) for r, b in backlogs if b.cap_bytes_per_s))
        snaps = CounterMetricFamily("pitr_snapshots_taken", "Scheduled snapshots taken by this process")
        snaps.add_metric([], self.snapshots)
        yield snaps
        last = GaugeMetricFamily("pitr_last_snapshot_timestamp_seconds", "Time of the newest snapshot taken by this "
                                 "process")
        if self.last_snapshot_ns is not None:
            last.add_metric([], self.last_snapshot_ns / 1e9)
        yield last
        requests = CounterMetricFamily("pitr_storage_requests", "Requests sent to the repository's storage "
                                       "(S3), retries included", labels=["repository", "operation"])
        for prog in list(self.archiver.progress):
            counts = getattr(prog.repo.storage, "requests", None)
            if isinstance(counts, dict):
                for operation, count in sorted(dict(counts).items()):
                    requests.add_metric([prog.repo.url, str(operation)], count)
        yield requests
