"""Session locks and crash recovery: journals of recorders that died become Parquet.

A running recorder holds a lock on ``_journal/<session>.lock``. Another recorder starting in the
same folder (or ``tastyrec recover``) converts the journal segments of sessions whose lock is free
— recorders that died — and leaves those of live recorders alone. A session's final status:
``ended`` (stopped cleanly), ``failed`` (stopped on an error), ``recovered`` (died; converted by
:func:`recover`). A recorder that stops but cannot write that status (a full disk) renames its lock
to ``<session>.fail`` or ``<session>.done`` (a rename needs no space), which :func:`recover` turns
into the status.

The conversion is the recorder's own (:func:`tastyrec.record.sink.convert_segment`), so the
crash-safety argument of :mod:`tastyrec.record.sink` covers recovery too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow.parquet as pq

from .. import catalog
from ..storage import layout
from ..storage.bookkeeping import SessionRow, read_session_rows
from ..storage.publish import TMP_SUFFIX
from .sink import WrittenFile, convert_segment, journal_segments, prune_journal

__all__ = ("RecoveryReport", "SessionLock", "lock_path", "marker_path", "recover")

logger = logging.getLogger(__name__)

#: marker suffix -> the final status it stands for
_MARKERS: Final = {"fail": "failed", "done": "ended"}


def lock_path(root: Path, session_id: str) -> Path:
    """The lock file a running recorder of ``session_id`` holds."""
    return root / layout.JOURNAL_DIR / f"{session_id}.lock"


def marker_path(root: Path, session_id: str, status: str) -> Path:
    """The lock file renamed when a recorder stopped but could not write its final status in
    its session row (a full disk): :func:`recover` then writes it (``failed`` or ``ended``). A
    rename needs no free space, and the name is as long as the lock's, so the folder entry is
    reused."""
    suffix = "fail" if status == "failed" else "done"
    return root / layout.JOURNAL_DIR / f"{session_id}.{suffix}"


class SessionLock:
    """An exclusive ``flock`` on ``_journal/<session>.lock``, held while the recorder runs.

    Raises:
        OSError: the lock file cannot be created (or is held: ``BlockingIOError``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self, marker: Path | None = None) -> None:
        """Unlock and remove the lock file, or rename it to ``marker`` (see
        :func:`marker_path`)."""
        if self._fd is None:
            return
        try:
            if marker is not None:
                os.replace(self.path, marker)
            else:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # the lock file stays: recover() then says "recovered"
            logger.warning("could not leave the status marker %s: %s", marker, exc)
        os.close(self._fd)
        self._fd = None


def _is_alive(lock: Path) -> bool:
    """Whether a recorder holds ``lock`` (False for a missing file or a free lock)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    files: list[WrittenFile] = field(default_factory=list)
    #: sessions whose journal was recovered
    sessions: list[str] = field(default_factory=list)
    #: journal segments left alone because their recorder is still running
    skipped_live: int = 0

    @property
    def rows(self) -> int:
        """Rows recovered into Parquet."""
        return sum(f.rows for f in self.files)

    @property
    def torn_bytes(self) -> int:
        """Bytes of torn tails dropped."""
        return sum(f.torn_bytes for f in self.files)


def _session_of(segment: Path) -> str:
    # name: <stamp>Z-<session>-<seq>.arrows
    return segment.stem.rsplit("-", 2)[-2]


def recover(
    root: str | os.PathLike[str],
    *,
    uploaded: Callable[[str], tuple[int, int, set[str]]] | None = None,
) -> RecoveryReport:
    """Turn journal segments left by recorders that died into Parquet. Blocking.

    Keeps every intact record, drops only torn tails; segments of running recorders are left
    alone. Marks the dead (killed) sessions ``recovered`` in the sessions table; a recorder that
    stopped but could not write its final status there (a full disk) left a marker
    (``_journal/<session>.fail`` or ``.done``), and its session is marked ``failed`` or ``ended``
    instead; a ``failed`` row keeps its status and gets the rows recovered from its journal.
    Safe to run twice. A compaction killed between publishing its merged file and deleting
    the files it replaced is finished here too (:func:`tastyrec.catalog.finish_compactions`), as
    every reader does, so that raw globs see each row once after ``record`` or ``recover``.

    ``uploaded`` (recordings into object storage, :mod:`tastyrec.record.upload`): a session id
    -> (rows, files, event types) of its files already uploaded (and deleted locally), counted
    in its row besides the local files.

    Raises:
        StorageError: a file could not be written (the journal is kept).
    """
    base = Path(root)
    report = RecoveryReport()
    if (base / layout.COMPACT_LOCK).exists():  # a compaction was killed (or is running)
        catalog.finish_compactions(base)  # its deletions are finished, as every reader does
    by_session: dict[str, list[Path]] = defaultdict(list)
    for segment in journal_segments(base):
        by_session[_session_of(segment)].append(segment)
    for pattern in ("*.lock", *(f"*.{suffix}" for suffix in _MARKERS)):
        for lock in sorted((base / layout.JOURNAL_DIR).glob(pattern)):
            by_session.setdefault(lock.stem, [])
    for session_id, segments in sorted(by_session.items()):
        lock = lock_path(base, session_id)
        if _is_alive(lock):
            report.skipped_live += len(segments)
            continue
        written = [w for w in (convert_segment(base, s) for s in segments) if w is not None]
        for pattern in (
            f"*/date=*/*-{session_id}-*{TMP_SUFFIX}",
            f"_*/*-{session_id}-*{TMP_SUFFIX}",
        ):
            for stale in base.glob(pattern):  # temporary files of a write the crash cut short
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        report.files += written
        report.sessions.append(session_id)
        markers = [lock.with_suffix(f".{suffix}") for suffix in _MARKERS]
        status = next((_MARKERS[m.suffix[1:]] for m in markers if m.exists()), None)
        _mark_recovered(base, session_id, written, status, uploaded)
        for path in (lock, *markers):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if not report.skipped_live:
        prune_journal(base)
    if report.files:
        logger.warning(
            "= recovered %d rows into %d files from the journal of %d interrupted session(s)",
            report.rows,
            len(report.files),
            len(report.sessions),
        )
    return report


def _mark_recovered(
    root: Path,
    session_id: str,
    written: list[WrittenFile],
    status: str | None = None,
    uploaded: Callable[[str], tuple[int, int, set[str]]] | None = None,
) -> None:
    """Rewrite a dead session's row from what is on disk now (rows, files, types, end), with
    ``status`` (the recorder's marker), else ``failed`` if the row says so, else
    ``recovered``."""
    files = sorted(root.glob(f"*/date=*/*-{session_id}-*{layout.PARQUET_SUFFIX}"))
    metas = [pq.read_metadata(f) for f in files]
    ends = [w.last_recv_ns for w in written if w.last_recv_ns is not None]
    for _, row in read_session_rows(root, session_id):
        was_failed = row["status"] == "failed"
        if row["status"] != "recording" and not (was_failed and (written or status)):
            continue
        remote_rows, remote_files, remote_types = (
            (0, 0, set()) if uploaded is None else uploaded(session_id)
        )
        session = SessionRow(
            session_id,
            row["start"],
            row["source"],
            list(row["symbols"] or ()),
            sorted(
                {f.parent.parent.name for f in files} | set(row["event_types"] or ()) | remote_types
            ),
            status="failed" if was_failed else status or "recovered",
            end_ns=row["end"] if row["end"] is not None else (max(ends) if ends else None),
            rows=sum(m.num_rows for m in metas) + remote_rows,
            files=len(files) + remote_files,
        )
        session.write(root)
