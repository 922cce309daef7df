"""Checking a repository against its signed checkpoints, and against a witness's copies of them.

Every checkpoint found (in the repository, and in the witness when one is
given) must be signed by the history's signing key: the witness's public key
when a witness is given (the repository's own copy must then be the same), else
the one beside the repository's checkpoints. Then, for every validly signed
checkpoint:

- the repository must still hold its LSN: a checkpoint beyond the newest
  segment is a rollback (newest segments removed, an older state presented as
  complete), reported with the missing LSN range;
- the chain digest at its LSN must be the one signed (else the history up to
  it was rewritten), when the file holding that LSN is there to say it;
- the identity document must be the one signed (else it was replaced or an
  older one replayed).

No key is needed (the quick check of an encrypted repository runs keyless),
except to fold a keyed chain inside a merged segment; such a point is then left
unchecked, and counted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pitr.errors import CorruptData, ObjectNotFound
from pitr.repo import layout
from pitr.repo.checkpoints import (
    PREFIX,
    REPOSITORY_PUBLIC_KEY,
    SignedCheckpoint,
    identity_digest,
    parse_checkpoint_name,
    read_public_key,
)
from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import Repository
from pitr.repo.witness import Witness, open_witness
from pitr.storage.base import Storage
from pitr.timefmt import format_time
from pitr.verify.checks import Finding
from segments import chain
from segments.segment_reader import SegmentMeta

MAX_CHECKPOINTS = 1 << 20  # bounds what a listing may make verify read


@dataclass(slots=True)
class CheckpointReport:
    """What the checkpoints said: how many were checked, the newest, the findings."""

    checked: int = 0
    newest_lsn: int | None = None
    unchecked_digests: int = 0  # keyed chain points inside merged segments, checked only with the key
    witness: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "newest_lsn": self.newest_lsn, "witness": self.witness,
                "unchecked_digests": self.unchecked_digests}


@dataclass(frozen=True, slots=True)
class _Found:
    signed: SignedCheckpoint
    file: str  # how a finding names it: the object name, prefixed by the witness's URL for a witness copy


async def _read_checkpoints(storage: Storage, prefix: str, label: str, store_id: uuid.UUID, public_key: bytes | None,
                            report: CheckpointReport) -> list[_Found]:
    listed = [i for i in await storage.list(prefix + PREFIX) if parse_checkpoint_name(i.name) is not None]
    if len(listed) > MAX_CHECKPOINTS:
        report.findings.append(Finding(label + PREFIX, f"{len(listed)} checkpoints, more than the {MAX_CHECKPOINTS} "
                                       "verify reads", kind="checkpoint"))
        listed = listed[-MAX_CHECKPOINTS:]
    found: list[_Found] = []
    for info in listed:
        file = label + info.name[len(prefix):]
        lsn = parse_checkpoint_name(info.name)
        try:
            signed = SignedCheckpoint.decode(await storage.read(info.name), file)
        except ObjectNotFound:
            continue  # removed between the listing and the read: nothing to check
        except CorruptData as exc:
            report.findings.append(Finding(file, exc.message, kind="checkpoint"))
            continue
        c = signed.checkpoint
        if c.lsn != lsn or c.store_id != store_id:
            report.findings.append(Finding(file, f"says LSN {c.lsn} of store {c.store_id}, not what its name and "
                                           "place say: moved or forged", lsn=lsn, kind="checkpoint"))
            continue
        if public_key is None or not signed.verify(public_key):
            why = "no signing key to check it against" if public_key is None else \
                "its signature does not verify under the history's signing key: forged or altered"
            report.findings.append(Finding(file, why, lsn=c.lsn, kind="checkpoint"))
            continue
        report.checked += 1
        found.append(_Found(signed, file))
    return found


def _digest_at(metas: Sequence[tuple[str, SegmentMeta]], lsn: int, link_key: bytes | None
               ) -> tuple[str, bytes | None] | None:
    """(the file that says it, the chain digest after `lsn`; None: only the key can say) or None when no file
    at hand holds the LSN (removed by retention, or damaged: holes are the timeline's)."""
    for name, meta in metas:
        if meta.first_lsn == lsn + 1:
            return name, meta.header.prev_chain_digest
        if meta.first_lsn <= lsn <= meta.last_lsn:
            if lsn == meta.last_lsn:
                return name, meta.chain_digest
            if meta.header.keyed_chain and link_key is None:
                return name, None
            digest = meta.header.prev_chain_digest
            for piece in meta.pieces:
                digest = chain.fold(digest, [piece], link_key if meta.header.keyed_chain else None)
                if piece.last_lsn == lsn:
                    return name, digest
            return name, b""  # not at a piece boundary: no checkpoint is ever made there
    return None


async def check_checkpoints(repo: Repository, ident: RepoIdentity, metas: Sequence[tuple[str, SegmentMeta]],
                            end_lsn: int | None, witness: Witness | None = None,
                            link_key: bytes | None = None) -> CheckpointReport:
    """Check the repository against its checkpoints and `witness`'s; `metas` are the healthy segments, in
    LSN order, and `end_lsn` the newest LSN the repository's files hold (None: none)."""
    report = CheckpointReport(witness=None if witness is None else witness.url)
    store_id = ident.store_id
    repo_label = ""
    own_key = await read_public_key(repo.storage, REPOSITORY_PUBLIC_KEY, store_id,
                                    f"{repo.url}/{REPOSITORY_PUBLIC_KEY}")
    found: list[_Found] = []
    if witness is not None:
        witness_key = await read_public_key(witness.storage, witness.public_key_object(store_id), store_id,
                                            witness.where(witness.public_key_object(store_id)))
        if witness_key is None:
            report.findings.append(Finding(witness.where(witness.public_key_object(store_id)),
                                           f"the witness holds no checkpoint of this history (store {store_id}): "
                                           "nothing to verify against", kind="missing"))
        elif own_key is not None and own_key != witness_key:
            report.findings.append(Finding(REPOSITORY_PUBLIC_KEY, "is not the signing key the witness holds: "
                                           "replaced", kind="checkpoint"))
        trusted = witness_key
        found += await _read_checkpoints(witness.storage, Witness.prefix(store_id), witness.where(Witness.prefix(store_id)),
                                         store_id, trusted, report)
        if witness_key is not None and not found and not report.findings:
            report.findings.append(Finding(witness.where(Witness.prefix(store_id) + PREFIX),
                                           "the witness holds this history's signing key but no checkpoint",
                                           kind="missing"))
    else:
        trusted = own_key
    found += await _read_checkpoints(repo.storage, "", repo_label, store_id, trusted, report)
    if not found:
        return report
    newest = max(found, key=lambda f: f.signed.checkpoint.lsn)
    report.newest_lsn = newest.signed.checkpoint.lsn
    stored_identity = await repo.storage.read(layout.IDENTITY)
    if newest.signed.checkpoint.identity_digest != identity_digest(stored_identity):
        report.findings.append(Finding(layout.IDENTITY, f"is not the identity document the checkpoint "
                                       f"{newest.file} signed: replaced, or an older one replayed",
                                       kind="checkpoint"))
    end = ident.first_lsn - 1 if end_lsn is None else end_lsn
    beyond = [f for f in found if f.signed.checkpoint.lsn > end]
    if beyond:
        c = newest.signed.checkpoint
        report.findings.append(Finding(newest.file, f"LSNs {end + 1}..{c.lsn} are missing: the history was "
                                       f"checkpointed (signed) through LSN {c.lsn} at {format_time(c.ts_ns)}, but the "
                                       f"repository ends at LSN {end}: its newest segments were removed (rolled "
                                       "back) or never arrived", lsn=end + 1, kind="missing"))
    seen: set[tuple[str, int]] = set()
    for f in found:
        c = f.signed.checkpoint
        if c.lsn > end:
            continue
        at = _digest_at(metas, c.lsn, link_key) if c.lsn >= ident.first_lsn - 1 else None
        if c.lsn == ident.first_lsn - 1:
            at = (layout.IDENTITY, ident.start_chain_digest)
        if at is None:
            continue
        name, digest = at
        if digest is None:
            report.unchecked_digests += 1
            continue
        if digest != c.chain_digest and (name, c.lsn) not in seen:
            seen.add((name, c.lsn))
            report.findings.append(Finding(name, f"the chain digest after LSN {c.lsn} is not the one the checkpoint "
                                           f"{f.file} signed: the history through LSN {c.lsn} was rewritten",
                                           lsn=c.lsn, kind="checkpoint"))
    return report


async def require_witnessed(repo: Repository, witness: Witness) -> CheckpointReport:
    """Refuse (`CorruptData`) a repository that the witness's checkpoints say was rolled back, rewritten or
    given another identity, before anything is restored from it; the report when it holds up.

    Reads every live segment's tables (no block), as `verify --quick` does."""
    import anyio

    from pitr.repo.live import live_segments, live_snapshots
    from segments import SegmentsError
    from segments.segment_reader import read_meta

    ident = await repo.require_identity()
    keep, _superseded = live_segments([i.name[len(layout.SEGMENTS):] for i in await repo.storage.list(layout.SEGMENTS)])
    metas: list[tuple[str, SegmentMeta]] = []
    for name in sorted(keep, key=lambda n: keep[n]):
        source = await repo.open_source(layout.segment_object(name))
        try:
            metas.append((name, await anyio.to_thread.run_sync(read_meta, source)))
        except SegmentsError:
            pass  # a damaged file is the restore's own business (it refuses or plans around it)
        finally:
            source.close()
    snaps, _replaced = live_snapshots([i.name[len(layout.SNAPSHOTS):] for i in await repo.storage.list(layout.SNAPSHOTS)])
    ends = [last for _first, last in keep.values()] + list(snaps.values())
    report = await check_checkpoints(repo, ident, metas, max(ends) if ends else None, witness,
                                     None if repo.segment_keys is None else repo.segment_keys.link_key)
    if report.findings:
        first = report.findings[0]
        more = f" (and {len(report.findings) - 1} more)" if len(report.findings) > 1 else ""
        raise CorruptData(f"{repo.url} does not hold up against the witness {witness.url}: {first.file}: "
                          f"{first.message}{more}; nothing was restored", path=first.file, lsn=first.lsn,
                          hint=f"run `pitr verify --witness {witness.url}` for every finding, and restore from "
                               "another copy of the history")
    return report


@asynccontextmanager
async def opened_witness(witness: str | Witness | None, repos: Sequence[Repository], *,
                         s3_endpoint: str | None = None) -> AsyncIterator[Witness | None]:
    """`witness` as the API takes it (a directory or `s3://` URL, an opened `Witness`, or None), opened.

    A URL is opened as `pitr verify --witness` opens it: it must exist (a verification against nothing
    proves nothing) and must not be one of `repos`. `s3_endpoint` defaults to the first S3 repository's."""
    if witness is None or isinstance(witness, Witness):
        yield witness
        return
    if s3_endpoint is None:
        s3_endpoint = next((e for r in repos if isinstance(e := getattr(r.storage, "endpoint_url", None), str)),
                           None)
    async with open_witness(witness, create=False, s3_endpoint=s3_endpoint,
                            repository_urls=tuple(r.url for r in repos)) as opened:
        yield opened


async def require_witnessed_all(repos: Sequence[Repository], witness: str | Witness, *,
                                s3_endpoint: str | None = None) -> list[CheckpointReport]:
    """`require_witnessed` for every repository, the witness opened once: the one rule restore applies
    (the library's `restore(..., RestoreOptions(witness=...))` and `pitr restore --witness` alike)."""
    async with opened_witness(witness, repos, s3_endpoint=s3_endpoint) as opened:
        assert opened is not None
        return [await require_witnessed(repo, opened) for repo in repos]
