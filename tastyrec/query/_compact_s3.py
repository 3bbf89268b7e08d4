"""Compaction of a recording on object storage (``tastyrec compact s3://bucket/prefix``).

The local algorithm (:mod:`tastyrec.query._compact`) with object-store primitives, per partition
``<Type>/date=D/``:

1. *Choose*: the partition's current objects as :mod:`tastyrec.catalog` lists them (listing also
   finishes an earlier compaction interrupted before its deletes: roll forward). Only objects
   listed here are ever deleted, so files a running recorder uploads meanwhile (unique names:
   ``<first receipt time>Z-<session>-<seq>.parquet``) are left for the next run.
2. *Merge locally*: the chosen objects are downloaded into a temporary folder and compacted there
   by the local routine (sort, write, verify, publish), which names the replaced files in the
   merged file's footer (``COMPACTED_FROM_KEY``). That footer is the intent record.
3. *Publish*: :func:`tastyrec.objectstore.upload` puts the merged file under its final key
   (staged and copied server-side: the key appears whole or not at all). From then on
   tastyrec's readers hide the replaced objects.
4. *Delete* the replaced objects.

Killed before 3: nothing changed in the bucket (at most a staging object, which never ends in
``.parquet``; removed here once older than a day). Killed between 3 and 4: the next reader or
compaction lists the partition and deletes the replaced objects (roll forward).

One compaction per prefix at a time: a lease object ``_compact.lock`` (``{"owner": token,
"expires": ISO time}``) taken with S3 conditional writes, which the store decides atomically
(boto3: pyarrow's filesystem cannot send the headers; :func:`tastyrec.objectstore.s3_client`).

* *Take*: ``PutObject`` with ``If-None-Match: *`` creates the lease only if no object has that
  key. Of two compactions started at the same instant exactly one succeeds; the other gets 412
  (or AWS's 409 ConditionalRequestConflict), reads the lease, and refuses to run with a
  :class:`~tastyrec.exceptions.StorageError` naming the lease, its expiry and what to do.
* *Take over a stale lease* (expired: its compaction died; or unreadable): ``PutObject`` with
  ``If-Match: <the ETag just read>``. Every lease body holds a fresh random token, so its ETag
  (the MD5 of a single PUT) is new each time: of two compactions that both read the same stale
  lease, the first replacement changes the ETag and the second one's condition fails. Deleting
  the stale lease and then creating one if absent would not be safe: the second contender's
  delete (unconditional, as DeleteObject was on AWS before conditional deletes) could remove the
  first one's *fresh* lease, and both would run.
* *Renew*: before each partition, once half of the lease's time is gone, the lease is rewritten
  with ``If-Match`` on its own ETag; if that fails, another compaction took it over (this one was
  stalled past the expiry) and this one stops with a StorageError before touching the next
  partition.
* *Release* at the end, also after a failure: ``DeleteObject`` with ``If-Match`` on its own ETag,
  so a lease another compaction took over is never deleted.

A store that answers the conditional write with 501 NotImplemented gets the weaker scheme of
earlier versions, with a logged warning: the lease is written and read back, and two compactions
started within one round trip of each other can both run. A store with ``If-None-Match`` but no
``If-Match`` on PUT keeps the atomic take, refuses to replace a stale lease (the error says to
delete it), and renews by reading and writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .. import catalog, objectstore
from ..exceptions import StorageError
from ..objectstore import (
    S3Location,
    _dirs,
    _error,
    remove_staging_leftovers,
    shared_filesystem,
    upload,
)
from . import _compact

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ("compact_s3",)

logger = logging.getLogger(__name__)

LOCK_NAME: Final = "_compact.lock"
#: a lease older than this is taken for a dead compaction's
LEASE: Final = timedelta(hours=1)
#: staging objects of uploads older than this are leftovers of killed uploads
STAGING_AGE_S: Final = 86_400.0


def compact_s3(
    root: S3Location,
    *,
    day: date | None,
    event_types: list[str] | None,
    max_rows: int,
    row_group_rows: int,
    progress: Callable[[_compact.CompactionResult], None] | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[_compact.CompactionResult]:
    """:func:`tastyrec.query.compact` of ``s3://bucket/prefix`` (module doc).

    Raises:
        StorageError: another compaction holds the lease, an object cannot be read, a merged
            file did not match its inputs (nothing was published), or the store failed.
    """
    fs = shared_filesystem()
    results = []
    with _lease(root, now) as lease:
        remove_staging_leftovers(fs, root, older_than_s=STAGING_AGE_S, now=now())
        for event_type in event_types or catalog.location_event_types(root, fs):
            for d in [day] if day is not None else _days(fs, root, event_type):
                lease.renew()
                result = _partition(fs, root, event_type, d, max_rows, row_group_rows)
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


def _days(fs: pafs.S3FileSystem, root: S3Location, event_type: str) -> list[date]:
    import pyarrow.fs as pafs

    days = []
    try:
        infos = _dirs(fs, root.join(event_type).path)
    except OSError as exc:
        raise _error("listing", root.url, exc) from None
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith("date="):
            with contextlib.suppress(ValueError):
                days.append(date.fromisoformat(info.base_name.removeprefix("date=")))
    return sorted(days)


def _partition(
    fs: pafs.S3FileSystem,
    root: S3Location,
    event_type: str,
    day: date,
    max_rows: int,
    row_group_rows: int,
) -> _compact.CompactionResult:
    folder = root.join(event_type, f"date={day.isoformat()}")
    listed = [
        p
        for p in catalog.s3_recording_files(root, event_type, start=day, end=day, fs=fs)
        if p.rpartition("/")[0] == folder.path
    ]
    if len(listed) < 2:
        return _compact.CompactionResult(event_type, day)
    with tempfile.TemporaryDirectory(prefix="tastyrec-compact-") as tmp:
        local = Path(tmp) / "rec"
        part = local / event_type / f"date={day.isoformat()}"
        part.mkdir(parents=True)
        for listed_key in listed:
            target = part / listed_key.rpartition("/")[2]
            try:
                with fs.open_input_stream(listed_key) as src, open(target, "wb") as dst:
                    while chunk := src.read(8 << 20):
                        dst.write(chunk)
            except OSError as exc:
                raise _error("reading", f"s3://{listed_key}", exc) from None
        (result,) = _compact.compact(
            local,
            day=day,
            event_types=[event_type],
            max_rows=max_rows,
            row_group_rows=row_group_rows,
        )
        for output in result.outputs:
            _compact._step("s3-upload")
            upload(output, folder.join(output.name), fs=fs)
        keys = [folder.join(p.name) for p in result.inputs]
        for key in keys:
            _compact._step("s3-delete")
            try:
                fs.delete_file(key.path)
            except FileNotFoundError:
                continue
            except OSError as exc:  # the next reader or compaction finishes it (roll forward)
                raise _error("deleting", key.url, exc) from None
        result.inputs = [Path(k.path) for k in keys]
        result.outputs = [Path(folder.join(o.name).path) for o in result.outputs]
    return result


class _Lease:
    """The compaction lease of one run (module doc): take, renew, release."""

    def __init__(self, root: S3Location, now: Callable[[], datetime]) -> None:
        self.root = root
        self.loc = root.join(LOCK_NAME)
        self.now = now
        self.token = secrets.token_hex(16)
        self.client = objectstore.s3_client()
        self.etag = ""
        self.expires = datetime.min.replace(tzinfo=UTC)
        #: the store honours conditional writes (else: write and read back, module doc)
        self.atomic = True

    def _body(self) -> tuple[bytes, datetime]:
        """A lease body of this run expiring :data:`LEASE` from now, and that expiry."""
        expires = self.now() + LEASE
        body = json.dumps({"owner": self.token, "expires": expires.isoformat()}).encode()
        return body, expires

    def _held(self, current: tuple[str, datetime]) -> StorageError:
        return StorageError(
            f"another `tastyrec compact` holds the lease {self.loc.url} until"
            f" {current[1]:%Y-%m-%d %H:%M:%S} UTC; wait for it to finish (or delete that object"
            " if no compaction is running)"
        )

    def take(self) -> None:
        """Create the lease, or replace a stale one, atomically.

        Raises:
            StorageError: another compaction holds a live lease, or won a race for it.
        """
        for _ in range(3):  # a lease released or replaced between our requests: look again
            body, expires = self._body()
            try:
                etag = objectstore.put_if(self.client, self.loc, body)
            except objectstore.ConditionalWriteUnsupported:
                self._take_unconditionally()
                return
            if etag is not None:
                self.etag, self.expires = etag, expires
                return
            found = self._read()
            if found is None:
                continue  # released meanwhile
            current, etag = found
            if current[1] > self.now():
                raise self._held(current)
            try:
                replaced = objectstore.put_if(self.client, self.loc, body, if_match=etag)
            except objectstore.ConditionalWriteUnsupported:
                raise StorageError(
                    f"the compaction lease {self.loc.url} expired at"
                    f" {current[1]:%Y-%m-%d %H:%M:%S} UTC (a compaction that died), and this"
                    " store cannot replace it atomically (no If-Match on PUT): delete that"
                    " object if no compaction is running, then run `tastyrec compact` again"
                ) from None
            if replaced is not None:
                logger.warning(
                    "took over the compaction lease %s, expired at %s UTC (a compaction that"
                    " died)",
                    self.loc.url,
                    f"{current[1]:%Y-%m-%d %H:%M:%S}",
                )
                self.etag, self.expires = replaced, expires
                return
        found = self._read()
        if found is not None and found[0][0] != self.token:
            raise self._held(found[0])
        raise StorageError(  # pragma: no cover - three lost races in a row
            f"another `tastyrec compact` started on {self.root.url} at the same time; run"
            " `tastyrec compact` again when it has finished"
        )

    def _take_unconditionally(self) -> None:
        logger.warning(
            "the object store does not support conditional writes (If-None-Match: 501"
            " NotImplemented): the compaction lease %s is written and read back instead, so two"
            " compactions started at the same instant can both run",
            self.loc.url,
        )
        self.atomic = False
        found = self._read()
        if found is not None and found[0][1] > self.now():
            raise self._held(found[0])
        body, self.expires = self._body()
        objectstore.put_bytes(self.client, self.loc, body)
        found = self._read()
        if found is None or found[0][0] != self.token:
            raise StorageError(
                f"another `tastyrec compact` started on {self.root.url} at the same time; run"
                " `tastyrec compact` again when it has finished"
            )
        self.etag = found[1]

    def renew(self) -> None:
        """Extend the lease once half of its time is gone.

        Raises:
            StorageError: another compaction took the lease over (this one outlived it).
        """
        if self.expires - self.now() > LEASE / 2:
            return
        body, expires = self._body()
        if self.atomic:
            try:
                etag = objectstore.put_if(self.client, self.loc, body, if_match=self.etag)
            except objectstore.ConditionalWriteUnsupported:  # If-None-Match only
                self.atomic = False
            else:
                if etag is None:
                    raise self._lost()
                self.etag, self.expires = etag, expires
                return
        found = self._read()  # without conditional writes: read, then write
        if found is None or found[0][0] != self.token:
            raise self._lost()
        self.etag, self.expires = objectstore.put_bytes(self.client, self.loc, body), expires

    def _lost(self) -> StorageError:
        return StorageError(
            f"this compaction lost its lease {self.loc.url} (it ran past the expiry and another"
            " compaction took it over); it stopped between partitions, nothing is lost: run"
            " `tastyrec compact` again when the other one has finished"
        )

    def release(self) -> None:
        """Delete the lease if it is still this run's (never one another run took over)."""
        try:
            found = self._read()
            if found is None or found[0][0] != self.token:
                logger.warning("the compaction lease %s was taken over: left alone", self.loc.url)
                return
            try:
                objectstore.delete_if(self.client, self.loc, found[1])
            except objectstore.ConditionalWriteUnsupported:
                objectstore.delete_if(self.client, self.loc, None)
        except StorageError as exc:  # the compaction's own outcome matters more
            logger.warning(
                "could not release the compaction lease %s (%s): it expires by itself",
                self.loc.url,
                objectstore.redact(str(exc)),
            )

    def _read(self) -> tuple[tuple[str, datetime], str] | None:
        """((owner, expiry), ETag) of the lease object, or ``None``; an unreadable body is
        taken for an expired lease."""
        found = objectstore.get_bytes(self.client, self.loc)
        if found is None:
            return None
        body, etag = found
        try:
            data = json.loads(body)
            expires = datetime.fromisoformat(data["expires"])
            if expires.tzinfo is None:
                raise ValueError("naive expiry")
            return (str(data["owner"]), expires), etag
        except (ValueError, KeyError, TypeError):
            return ("?", datetime.min.replace(tzinfo=UTC)), etag


@contextlib.contextmanager
def _lease(root: S3Location, now: Callable[[], datetime]) -> Iterator[_Lease]:
    lease = _Lease(root, now)
    lease.take()
    try:
        yield lease
    finally:
        lease.release()
