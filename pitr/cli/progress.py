"""The progress bars of long commands on a terminal, drawn by rich (imported only when one is shown).

Restore and verify report bytes, so a bar shows bytes done of bytes planned,
the rate and the time left; cleanup reports files. A phase (`restore`,
`verify`, `cleanup`) is one bar.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress


class TerminalProgress:
    """One bar per phase on standard error; `unit` is "bytes" or "items"."""

    def __init__(self, unit: str) -> None:
        columns: list[ProgressColumn | str] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(binary_units=True), TransferSpeedColumn(), TextColumn("left"),
                        TimeRemainingColumn()]
        else:
            columns += [MofNCompleteColumn(), TextColumn("left"), TimeRemainingColumn()]
        self._bars = RichProgress(*columns, console=Console(stderr=True), refresh_per_second=5)
        self._tasks: dict[str, TaskID] = {}
        self._bars.start()

    def update(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._bars.add_task(phase, total=total)
        self._bars.update(task, completed=done, total=total)

    def stop(self) -> None:
        self._bars.stop()
