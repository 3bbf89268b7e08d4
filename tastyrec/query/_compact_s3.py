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

One compaction per prefix at a time: a lease object ``_compact.lock`` (owner token, expiry) is
written and read back; a fresh lease of another owner refuses the run. S3 has no atomic
create-if-absent that pyarrow can send, so two compactions started within the same instant can
both pass; the lease narrows that window to one round trip, it does not close it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .. import catalog
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
    with _lease(fs, root, now):
        remove_staging_leftovers(fs, root, older_than_s=STAGING_AGE_S, now=now())
        for event_type in event_types or catalog.location_event_types(root, fs):
            for d in [day] if day is not None else _days(fs, root, event_type):
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


@contextlib.contextmanager
def _lease(fs: pafs.S3FileSystem, root: S3Location, now: Callable[[], datetime]) -> Iterator[None]:
    path = root.join(LOCK_NAME).path
    token = secrets.token_hex(8)
    current = _read_lease(fs, path)
    if current is not None and current[1] > now():
        raise StorageError(
            f"another `tastyrec compact` holds {root.url}/{LOCK_NAME} until {current[1]:%H:%M:%S}"
            " UTC; wait for it to finish (or delete that object if no compaction is running)"
        )
    body = json.dumps({"owner": token, "expires": (now() + LEASE).isoformat()}).encode()
    try:
        with fs.open_output_stream(path) as out:
            out.write(body)
    except OSError as exc:
        raise _error("writing", f"s3://{path}", exc) from None
    held = _read_lease(fs, path)
    if held is None or held[0] != token:
        raise StorageError(f"another `tastyrec compact` started on {root.url} at the same time")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if (_read_lease(fs, path) or ("",))[0] == token:
                fs.delete_file(path)


def _read_lease(fs: pafs.S3FileSystem, path: str) -> tuple[str, datetime] | None:
    try:
        with fs.open_input_stream(path) as src:
            data = json.loads(src.read())
        return str(data["owner"]), datetime.fromisoformat(data["expires"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return ("?", datetime.min.replace(tzinfo=UTC))  # unreadable: taken as expired
