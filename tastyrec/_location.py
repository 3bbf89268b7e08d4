"""Where a recording is: the one function that turns a user's recording location into a path.

Every place that takes a recording location from a user -- ``Recorder(out=...)``, the command
line's ``--out``, ``--data`` and ``PATH``, :func:`~tastyrec.connect`, :func:`~tastyrec.scan`,
:class:`~tastyrec.ReplayStreamer`, :func:`~tastyrec.replay.replay_frames`, ``serve``'s feed,
compaction and the catalog -- calls :func:`recording_path` (and readers
:func:`existing_recording`). Two rules live here and nowhere else:

* **A URL is never a local path.** ``s3://bucket/rec`` (any ``scheme://``, and the ``s3:/bucket``
  that ``Path("s3://bucket")`` collapses it to) is refused with
  :class:`~tastyrec.exceptions.UnsupportedLocation`: ``pathlib`` would otherwise happily write a
  folder named ``s3:`` in the working directory, and a user would believe the data is in the
  bucket. Object storage is not implemented yet; when it is, this is the seam it plugs into: the
  scheme is recognised here, and a backend for it is returned instead of a refusal.
* **A missing recording is one error.** :func:`existing_recording` raises
  :class:`~tastyrec.exceptions.RecordingNotFound` (a ``StorageError`` and a
  ``FileNotFoundError``) when there is no folder at the path.

A one-letter scheme is a Windows drive (``C:/data``), not a URL. A local folder really named
like a scheme is reached by relative text, ``./s3:/rec`` (returned absolute: ``pathlib`` would
fold it back into ``s3:/rec``), or by an absolute path.

Readers also take ``s3://bucket/prefix``: :func:`tastyrec.catalog.reading_location` and
:func:`tastyrec.catalog.existing_location` (in the storage layer, beside
:mod:`tastyrec.objectstore`) send local locations here and return an
:class:`~tastyrec.objectstore.S3Location` for URLs. :func:`recording_path` stays local-only (for
local-only callers: compaction's lock, the recorder's journal); the writer parses its ``--out``
with :func:`tastyrec.objectstore.parse_location` itself.

Imports the standard library and :mod:`tastyrec.exceptions` only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from .exceptions import RecordingNotFound, UnsupportedLocation

__all__ = ("existing_recording", "recording_path", "url_scheme")

#: ``scheme:/`` at the start (``scheme://`` after ``pathlib`` folded the double slash)
_URL: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/")
#: what a missing recording's message tells the user to do
_WHAT: Final = "give the folder `tastyrec record --out` wrote (default: data)"


def url_scheme(location: str | os.PathLike[str]) -> str | None:
    """The URL scheme of a location (``"s3"``), or ``None`` for a local path."""
    match = _URL.match(os.fspath(location))
    return None if match is None else match.group(1).lower()


def recording_path(location: str | os.PathLike[str]) -> Path:
    """The local folder of a recording location (to read or to write).

    Raises:
        UnsupportedLocation: ``location`` is a URL (``s3://bucket/prefix``...).
    """
    if not isinstance(location, (str, os.PathLike)):  # an S3Location, from catalog.reading_location
        raise UnsupportedLocation(
            f"{location}: this needs a local folder; on object storage only reading (connect, "
            "scan, sql, info) is supported so far"
        )
    text = os.fspath(location)
    scheme = url_scheme(text)
    if scheme is not None:
        raise UnsupportedLocation(
            f"{text!r}: object storage URLs ({scheme}://...) are not supported yet; give a local "
            f"folder (for a local folder named {scheme + ':'!r}, write ./{scheme}:/...)"
        )
    path = Path(text)
    if url_scheme(path) is not None:  # ./s3:/rec, which pathlib folds into s3:/rec: keep it
        path = path.absolute()  # local, also when this path is handed on and checked again
    return path


def existing_recording(location: str | os.PathLike[str]) -> Path:
    """The local folder of a recording to read: :func:`recording_path`, which must exist.

    Raises:
        UnsupportedLocation: ``location`` is a URL.
        RecordingNotFound: there is no folder at ``location`` (nothing, or a file).
    """
    path = recording_path(location)
    if path.is_dir():
        return path
    where = repr(str(path))
    if path.exists():
        why = f"{where} is a file, not a recording folder"
    else:
        why = f"there is no folder {where}"
    raise RecordingNotFound(f"no recording at {where}: {why}; {_WHAT}", str(path))

