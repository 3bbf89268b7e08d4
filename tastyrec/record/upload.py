"""Recording into object storage: the local journal dir, and the uploader thread that empties it.

``Recorder(out="s3://bucket/prefix")`` (``tastyrec record --out s3://…``) records exactly as into a
local folder, but into a *journal dir* on local disk (``--journal DIR``; default
:func:`default_journal_dir`): the journal, the Parquet files made at each rotation and the
bookkeeping tables. An :class:`Uploader` (one worker thread, never the event loop) mirrors that
folder into the bucket:

* every Parquet data file ``<Type>/date=D/<name>.parquet`` goes to the same key under the prefix
  with :func:`tastyrec.objectstore.upload` (staging key, server-side copy, HEAD size check);
  only once the upload is confirmed are its journal segment and then the local file deleted. A
  crash in between leaves the local file, which the next pass uploads again under the same key
  (same name, same rows): a row is never in two objects;
* ``_sessions``, ``_gaps`` and ``_subscriptions`` files are uploaded whenever they change; those of
  sessions that have ended (no live lock) are deleted locally once uploaded;
* a failed upload keeps the file and is retried after a capped exponential backoff, forever while
  recording (the journal dir grows meanwhile); :class:`~tastyrec.record.status.UploadBacklog`
  shows files and bytes waiting and the last error (redacted by
  :class:`~tastyrec.objectstore.ObjectStoreError`).

``tastyrec recover --out s3://… [--journal DIR]`` converts what the journal holds and runs one
:meth:`Uploader.drain` over the same folder. Running it again uploads nothing: nothing is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..exceptions import StorageError
from ..objectstore import (
    Backoff,
    ObjectStoreError,
    S3Location,
    list_parquet,
    parse_location,
    redact,
    remove_staging_leftovers,
    s3_filesystem,
    upload,
)
from ..storage import layout
from .recovery import RecoveryReport, _is_alive, lock_path, recover
from .sink import prune_journal
from .status import UploadBacklog

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = (
    "UploadRetry",
    "Uploader",
    "UploadsPending",
    "default_journal_dir",
    "s3_destination",
    "upload_recovered",
)

logger = logging.getLogger(__name__)

#: bookkeeping folders mirrored into the bucket
BOOKKEEPING_DIRS: Final = (layout.SESSIONS_DIR, layout.GAPS_DIR, layout.SUBSCRIPTIONS_DIR)
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


class UploadsPending(StorageError):
    """A recording (or ``recover``) ended with files not uploaded yet; they are safe in the
    local journal dir, and ``tastyrec recover --journal DIR --out s3://…`` uploads them."""


def pending_message(backlog: UploadBacklog, root: Path) -> str:
    """What :class:`UploadsPending` says: what is left, where it is, what uploads it."""
    error = f" (last error: {backlog.last_error})" if backlog.last_error else ""
    return (
        f"{backlog.files} files ({backlog.bytes:,} bytes) are not uploaded to {backlog.dest} "
        f"yet{error}; the data is safe in the journal dir {str(root)!r}: "
        f"`tastyrec recover --journal {root} --out {backlog.dest}` uploads it"
    )


def s3_destination(out: str | os.PathLike[str]) -> S3Location | None:
    """``out`` as an :class:`S3Location` when it is an ``s3://`` (or ``s3a://``) URL, else
    ``None`` (a local folder, or another scheme that ``recording_path`` refuses).

    Raises:
        ValueError: an ``s3://`` URL with a bad bucket or prefix, or with credentials in it.
    """
    if isinstance(out, os.PathLike):
        return None
    if not re.match(r"^s3a?://", out, re.IGNORECASE):
        return None
    loc = parse_location(out)
    return loc if isinstance(loc, S3Location) else None


def default_journal_dir(dest: S3Location, env: dict[str, str] | None = None) -> Path:
    """``<user cache dir>/tastyrec/journal/<bucket>_<prefix>-<hash>`` for ``dest``.

    The cache dir is platformdirs' ``user_cache_dir`` when platformdirs is installed, else the
    XDG rule (``$XDG_CACHE_HOME``, else ``~/.cache``), which is what platformdirs gives on Linux.
    The folder name keeps only ``[A-Za-z0-9._-]`` of the bucket and prefix (never a path
    separator, never ``..``) and ends with a hash of the URL, so two prefixes that sanitise alike
    still get two folders.
    """
    env = dict(os.environ) if env is None else env
    try:  # not a dependency: used when another package brought it in
        platformdirs = importlib.import_module("platformdirs")
        cache = Path(platformdirs.user_cache_dir("tastyrec", appauthor=False))
    except ImportError:
        xdg = env.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
        cache = base / "tastyrec"
    readable = _UNSAFE.sub("_", dest.path.replace("/", "_")).strip("._")[:80] or "bucket"
    digest = hashlib.sha256(dest.url.encode()).hexdigest()[:10]
    return cache / "journal" / f"{readable}-{digest}"


@dataclass(frozen=True)
class UploadRetry:
    """The uploader's own backoff between passes that failed: ``first_s``, doubling, at most
    ``max_s``; never gives up while recording."""

    first_s: float = 1.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.first_s <= self.max_s):
            raise ValueError(f"bad upload retry delays: {self!r}")


def _session_of(path: Path) -> str:
    # <stamp>Z-<session>-<seq>.parquet
    return path.stem.rsplit("-", 2)[-2]


@dataclass
class Uploader:
    """Uploads the Parquet files of a local journal dir ``root`` to ``dest``.

    Use :meth:`start`/:meth:`wake`/:meth:`stop` for a recording (a daemon thread), or
    :meth:`drain` alone (``recover``). Thread-safe: the recorder only calls :meth:`wake`.

    Args:
        root: the local journal dir (a recording folder's layout).
        dest: the recording's root in the bucket.
        live_session: the recorder's session id: its bookkeeping files are kept locally (it
            rewrites them) and uploaded again when they change.
        fs: the S3 filesystem (default: from the AWS configuration).
        retry: the wait after a pass that failed.
        poll_s: how often the thread looks for changed bookkeeping files without a wake-up.
        backlog: the counters the status display shows (updated here).
    """

    root: Path
    dest: S3Location
    live_session: str | None = None
    fs: pafs.S3FileSystem | None = None
    retry: UploadRetry = field(default_factory=UploadRetry)
    poll_s: float = 5.0
    backlog: UploadBacklog = field(default_factory=UploadBacklog)
    _wake: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _urgent: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _ended: set[str] = field(default_factory=set, init=False, repr=False)
    _ready: set[Path] = field(default_factory=set, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _idle: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _sent: dict[Path, tuple[int, int]] = field(default_factory=dict, init=False, repr=False)
    _pass: int = field(default=0, init=False, repr=False)
    _clean_pass: int = field(default=-1, init=False, repr=False)
    _permanent_pass: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        self.backlog.dest = self.dest.url

    # -- what is waiting -----------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Local files not uploaded yet: data files (oldest name first), then bookkeeping files
        that are new or changed since their last upload."""
        # the live recorder's files once it has handed them over (wake): until its conversion
        # returns, a file just published is still being looked at
        data = sorted(
            (
                p
                for p in self.root.glob("*/date=*/*" + layout.PARQUET_SUFFIX)
                if not p.parts[-3].startswith("_")
                and (p in self._ready or _session_of(p) != self.live_session)
            ),
            key=lambda p: p.name,
        )
        books: list[Path] = []
        for folder in BOOKKEEPING_DIRS:
            for path in sorted((self.root / folder).glob("*" + layout.PARQUET_SUFFIX)):
                sig = _signature(path)
                if sig is not None and self._sent.get(path) != sig:
                    books.append(path)
        return data + books

    def _count(self, files: list[Path]) -> None:
        sizes = [s for s in (_size(p) for p in files) if s is not None]
        self.backlog.files = len(sizes)
        self.backlog.bytes = sum(sizes)

    # -- one pass ------------------------------------------------------------------------------

    def upload_pending(self) -> bool:
        """Upload everything waiting, once; ``True`` if all of it went (blocking).

        A failure stops the pass (the store is probably down: the next file would fail too) and
        is kept in ``backlog.last_error``; the file stays for the next pass.
        """
        self._pass += 1
        files = self.pending()
        self._count(files)
        fs = self._filesystem()
        for i, path in enumerate(files):
            try:
                self._upload_one(fs, path)
            except ObjectStoreError as exc:
                self.backlog.last_error = str(exc)
                self.backlog.failures += 1
                if not exc.transient:  # no bucket, access denied: waiting will not help
                    self._permanent_pass = self._pass
                level = logging.WARNING if exc.transient else logging.ERROR
                logger.log(level, "upload failed, the file stays in %s: %s", self.root, exc)
                self._count(self.pending())
                return False
            except FileNotFoundError:  # gone meanwhile (a concurrent recover): nothing to do
                pass
            self._count(files[i + 1 :])
        self.backlog.last_error = None
        self._count(self.pending())
        return self.backlog.files == 0

    def _filesystem(self) -> pafs.S3FileSystem:
        if self.fs is None:
            self.fs = s3_filesystem()
        return self.fs

    def _upload_one(self, fs: pafs.S3FileSystem, path: Path) -> None:
        rel = path.relative_to(self.root)
        key = self.dest.join(*rel.parts)
        sig = _signature(path)
        if sig is None:
            raise FileNotFoundError(path)
        # one attempt: the uploader's own backoff decides when to try again
        info = upload(path, key, fs=fs, backoff=Backoff(attempts=1))
        self.backlog.uploaded_files += 1
        self.backlog.uploaded_bytes += info.size
        logger.info("= uploaded %s (%d bytes)", key.url, info.size)
        if rel.parts[0] in BOOKKEEPING_DIRS:
            session = _session_of(path)
            if session == self.live_session or (
                session not in self._ended and _is_alive(lock_path(self.root, session))
            ):
                self._sent[path] = sig  # rewritten later: upload again when it changes
            elif _signature(path) == sig:  # an ended session's final table
                _unlink(path)
            return
        # confirmed by HEAD: the journal segment first, then the local file (a crash between
        # the two leaves the file, uploaded again under the same key)
        event_type, part = rel.parts[0], rel.parts[1]
        segment = (
            self.root / layout.JOURNAL_DIR / event_type / part / (path.stem + layout.JOURNAL_SUFFIX)
        )
        _unlink(segment)
        _unlink(path)
        self._ready.discard(path)

    def forget_live_session(self) -> None:
        """The recorder ended: its bookkeeping files are final and go like an ended session's
        (deleted locally once uploaded), although it still holds its lock."""
        if self.live_session is not None:
            self._ended.add(self.live_session)
        self.live_session = None
        self._sent.clear()

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (a daemon: a crash leaves the journal dir to ``recover``)."""
        self._thread = threading.Thread(target=self._run, name="tastyrec-upload", daemon=True)
        self._thread.start()

    def wake(self, written: Path | None = None) -> None:
        """A file may be waiting: look now (unless waiting out a backoff). ``written``: a file
        of the live session the recorder has finished with (only those are uploaded)."""
        if written is not None:
            self._ready.add(written)
        self._wake.set()

    def _run(self) -> None:
        delay = self.retry.first_s
        while not self._stop.is_set():
            self._wake.clear()
            self._urgent.clear()
            started = self._pass + 1
            try:
                ok = self.upload_pending()
            except Exception as exc:  # a local error (unreadable folder...): keep going
                ok = False
                self.backlog.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("uploader pass failed")
            with self._idle:
                if ok:
                    self._clean_pass = started
                self._idle.notify_all()
            if ok:
                delay = self.retry.first_s
                self._wake.wait(self.poll_s)
            else:
                self.backlog.retry_in_s = delay
                self._urgent.wait(delay)  # stop() and wait_clean() cut it short
                self.backlog.retry_in_s = None
                delay = min(delay * 2, self.retry.max_s)

    def wait_clean(self, timeout_s: float, progress: Callable[[UploadBacklog], None]) -> bool:
        """Wait (at most ``timeout_s``) for a pass that starts after this call and leaves
        nothing waiting; ``progress`` is called with the backlog after every pass."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            target = self._pass + 1
        self.wake()
        self._urgent.set()
        with self._idle:
            while self._clean_pass < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._permanent_pass >= target:
                    return False
                self._idle.wait(min(left, 1.0))
                progress(self.backlog)
        return True

    def stop(self) -> None:
        """Stop the thread (waits for an upload in progress: bounded by the SDK's timeouts)."""
        self._stop.set()
        self._wake.set()
        self._urgent.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def drain(self, timeout_s: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Upload everything waiting, retrying with the backoff until ``timeout_s`` has passed
        (measured on the monotonic clock); ``True`` if nothing is left. Blocking, no thread."""
        deadline = time.monotonic() + timeout_s
        delay = self.retry.first_s
        while True:
            if self.upload_pending():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sleep(min(delay, left))
            delay = min(delay * 2, self.retry.max_s)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _size(path: Path) -> int | None:
    sig = _signature(path)
    return None if sig is None else sig[0]


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def uploaded_counter(uploader: Uploader) -> Callable[[str], tuple[int, int, set[str]]]:
    """For :func:`~tastyrec.record.recovery.recover`: a session's rows, files and event types
    already in the bucket, from one listing of the prefix (made at the first call) and the
    footers of that session's files only. A failed listing counts nothing (the row then
    undercounts; the data itself is untouched)."""
    listing: list[str] = []
    listed = False

    def count(session_id: str) -> tuple[int, int, set[str]]:
        nonlocal listed
        import pyarrow.parquet as pq

        fs = uploader._filesystem()
        try:
            if not listed:
                listing.extend(i.path for i in list_parquet(fs, uploader.dest))
                listed = True
            prefix = len(uploader.dest.path) + 1
            # a file also still here (uploaded, not yet deleted) is counted with the local ones
            mine = [
                p
                for p in listing
                if f"-{session_id}-" in p.rpartition("/")[2]
                and not (uploader.root / p[prefix:]).exists()
            ]
            rows = 0
            for path in mine:
                with fs.open_input_file(path) as fh:
                    rows += pq.ParquetFile(fh).metadata.num_rows
        except (ObjectStoreError, OSError) as exc:
            logger.warning(
                "cannot count the uploaded files of session %s: %s", session_id, redact(str(exc))
            )
            return 0, 0, set()
        return rows, len(mine), {p[prefix:].split("/")[0] for p in mine}

    return count


def upload_recovered(
    journal: Path,
    dest: S3Location,
    *,
    timeout_s: float = 300.0,
    retry: UploadRetry | None = None,
    fs: pafs.S3FileSystem | None = None,
) -> tuple[RecoveryReport, Uploader]:
    """``tastyrec recover --out s3://…``: convert the dead sessions' journal segments in
    ``journal`` into Parquet, then upload every file waiting there (retrying until
    ``timeout_s``). Idempotent: an uploaded file is deleted locally, so a second run finds
    nothing to upload.

    Raises:
        StorageError: a file could not be written locally.
        UploadsPending: files remain after ``timeout_s``.
    """
    uploader = Uploader(journal, dest, fs=fs, retry=retry or UploadRetry())
    report = recover(journal, uploaded=uploaded_counter(uploader))
    if not uploader.drain(timeout_s):
        raise UploadsPending(pending_message(uploader.backlog, journal))
    # staged copies of uploads a crash cut short (hidden from readers), a day old or more
    with contextlib.suppress(ObjectStoreError):
        remove_staging_leftovers(
            uploader._filesystem(), dest, older_than_s=86400.0, now=datetime.now(UTC)
        )
    prune_journal(journal)
    return report, uploader
