"""Publishing archive files: a new segment (never overwriting), and merging a run of small segments
(publishing the merged one beside them: only `pitr cleanup` deletes)."""

from __future__ import annotations

import io
import os
import tempfile

import anyio

from pitr.catalog.entries import BlockRow, SegmentEntry
from pitr.errors import CorruptData, ObjectExists, file_error
from pitr.repo import layout
from pitr.repo.indexing import block_rows, segment_entry
from pitr.repo.repository import Repository
from pitr.scratch import remove_scratch
from segments import merge_segments, segment_name
from segments.segment_reader import SegmentReader, read_meta
from segments.source import BytesSource

UPLOAD_VIA_FILE = 8 << 20


async def publish_new(repo: Repository, object_name: str, blob: bytes) -> None:
    """Publish a new file; an identical file already there (a retry after a crash) is fine."""
    try:
        if len(blob) > UPLOAD_VIA_FILE:
            tmp = await anyio.to_thread.run_sync(_stage_upload, blob)
            try:
                await repo.storage.publish_file(object_name, tmp)
            finally:
                with anyio.CancelScope(shield=True):  # a cancelled upload still removes its staged copy
                    await anyio.to_thread.run_sync(remove_scratch, tmp, "remove the staged upload")
        else:
            await repo.storage.publish(object_name, blob)
    except ObjectExists:
        existing = await repo.storage.read(object_name)
        if existing != blob:
            raise CorruptData(f"{repo.url}/{object_name} exists with different contents; published files "
                              "are never overwritten", path=object_name,
                              hint="another archiver may be writing to this repository") from None


def _stage_upload(blob: bytes) -> str:
    """Write `blob` to a private temporary file (the path); a worker-thread call."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".upload-")
    except OSError as exc:
        raise file_error(exc, tempfile.gettempdir(), "stage an upload") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
    except OSError as exc:
        remove_scratch(tmp, "remove the staged upload")
        raise file_error(exc, tmp, "stage an upload") from exc
    return tmp


async def merge_run(repo: Repository, run: list[SegmentEntry]) -> SegmentEntry:
    """Merge consecutive segments into one, publish and index it; the originals stay in the repository.

    Nothing is replaced or deleted here (a write-once repository): the inputs are
    superseded by the merged segment (readers skip them, `live_segments`), and only
    `pitr cleanup` deletes them, once the merged one is indexed.
    """
    sources = [await repo.open_source(layout.segment_object(s.name)) for s in run]

    def do_merge() -> tuple[bytes, SegmentEntry, list[BlockRow]]:
        readers = [SegmentReader(src, keys=repo.segment_keys) for src in sources]
        out = io.BytesIO()
        merge_segments(readers, out, keys=repo.segment_keys)
        blob = out.getvalue()
        name = segment_name(run[0].first_lsn, run[-1].last_lsn)
        meta = read_meta(BytesSource(blob, name))
        return blob, segment_entry(name, meta), block_rows(meta)

    try:
        blob, entry, blocks = await anyio.to_thread.run_sync(do_merge)
    finally:
        for src in sources:
            src.close()
    await publish_new(repo, layout.segment_object(entry.name), blob)
    # the runs' key tables are merged into the new segment's (key_table None)
    await anyio.to_thread.run_sync(repo.catalog.add_segment_indexed, entry, blocks, None, [s.first_lsn for s in run])
    await repo.remember(layout.segment_object(entry.name), blob)
    return entry
