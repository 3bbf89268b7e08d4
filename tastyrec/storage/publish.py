"""Atomic publication of a file: the one way tastyrec makes a file appear in a recording.

Every file a reader may open — a recorder's Parquet file, a compacted file, a row of the
``_sessions`` or ``_gaps`` tables — is published by :func:`publish`:

1. write ``<name>.<tag>.tmp`` in the target's own folder (a rename never crosses filesystems),
2. flush and ``fsync`` it,
3. optionally check it (compaction reads it back; the sink drops a file with no rows),
4. ``os.replace`` it onto ``<name>`` (atomic: a reader sees the old file or the new one whole),
5. ``fsync`` the folder, so the rename survives a power loss.

On any error (or when the check says no) the temporary file is removed and nothing under the
final name changes. Readers list ``*.parquet`` only, never ``*.tmp``; a temporary left by a
killed process is removed by the next ``tastyrec recover`` or ``tastyrec compact``.

Every writer hands :func:`publish` a target and a function that writes the bytes, never a
path to open itself: that is the seam for a destination that is not a local folder. On object
storage the same contract holds with other means — the bytes go to one PUT or a multipart
upload completed only after ``check``; the object appears under its final key whole or not at
all; nothing else changes for the sink, compaction or the bookkeeping tables.

This module imports the standard library only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ("TMP_SUFFIX", "fsync_dir", "publish", "temporary_path")

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """``fsync`` a directory, making renames and new files in it durable (POSIX)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(target: Path, tag: str = "") -> Path:
    """The temporary file :func:`publish` writes ``target`` to: ``<name>[.<tag>].tmp``."""
    return target.with_name(f"{target.name}.{tag}{TMP_SUFFIX}" if tag else target.name + TMP_SUFFIX)


def publish(
    target: Path,
    write: Callable[[BinaryIO], None],
    *,
    check: Callable[[Path], bool] | None = None,
    tag: str = "",
) -> bool:
    """Write ``target`` atomically: ``write`` fills a temporary file beside it, then rename.

    Args:
        target: the final path (its folder is created if needed).
        write: writes the contents to the open binary file it is given (not closed by it).
        check: called with the temporary path once it is written, synced and closed; ``False``
            discards it (nothing is published), an exception discards it and propagates.
        tag: part of the temporary name, for writers that may publish the same target at
            once (two writers never share a temporary file).

    Returns:
        Whether ``target`` was published (``False``: ``check`` said no).

    Raises:
        OSError: writing, syncing or renaming failed; ``target`` is unchanged (callers turn
            this into a :class:`~tastyrec.exceptions.StorageError` that says what to do).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target, tag)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None and not check(tmp):
            tmp.unlink()
            return False
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: no half-written file left behind
            tmp.unlink()
        raise
    fsync_dir(target.parent)
    return True
