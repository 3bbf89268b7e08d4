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

Readers (:func:`reading_location`, :func:`existing_location`) also take ``s3://bucket/prefix``
(and ``s3a://``): they get a :class:`~tastyrec.objectstore.S3Location` back, which the catalog
lists through :func:`tastyrec.objectstore.list_parquet`. :func:`recording_path` stays local-only
(for the local-only callers: compaction's lock, the recorder's journal); the writer parses its
``--out`` with :func:`tastyrec.objectstore.parse_location` itself.

Imports the standard library and :mod:`tastyrec.exceptions` only (``objectstore``, itself
standard library only at import, when a URL is given).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

from .exceptions import RecordingNotFound, UnsupportedLocation

if TYPE_CHECKING:
    from .objectstore import S3Location

__all__ = (
    "Location",
    "existing_location",
    "existing_recording",
    "reading_location",
    "recording_path",
    "url_scheme",
)

#: Where a recording is, for readers: a local folder or an ``s3://bucket/prefix``.
Location: TypeAlias = "Path | S3Location"

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
    if not isinstance(location, (str, os.PathLike)):  # an S3Location, from reading_location
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


def reading_location(location: str | os.PathLike[str] | S3Location) -> Path | S3Location:
    """A recording location to read: a local folder (:func:`recording_path`) or an
    ``s3://bucket/prefix`` (:class:`~tastyrec.objectstore.S3Location`).

    Raises:
        UnsupportedLocation: a URL of another scheme, a bad bucket name or key prefix, or
            credentials in the URL (never repeated).
    """
    from .objectstore import S3Location, parse_location

    if isinstance(location, S3Location):
        return location
    scheme = url_scheme(os.fspath(location)) if isinstance(location, str) else None
    if scheme not in ("s3", "s3a"):
        return recording_path(location)
    try:
        parsed = parse_location(location)
    except ValueError as exc:
        raise UnsupportedLocation(str(exc)) from None
    assert isinstance(parsed, S3Location)
    return parsed


def existing_location(location: str | os.PathLike[str] | S3Location) -> Path | S3Location:
    """:func:`reading_location`, which must hold a recording: a local folder that exists
    (:func:`existing_recording`), or a key prefix with at least one key under it (one LIST
    request of at most one key).

    Raises:
        UnsupportedLocation: see :func:`reading_location`.
        RecordingNotFound: nothing at ``location``.
        ObjectStoreError: the store could not be asked (network, permissions).
    """
    loc = reading_location(location)
    if isinstance(loc, Path):
        return existing_recording(loc)
    from .objectstore import prefix_exists

    if prefix_exists(loc):
        return loc
    raise RecordingNotFound(
        f"no recording at {loc.url}: there is no key under {loc.url}/; give the bucket and "
        "prefix `tastyrec record --out` wrote to (and the endpoint in AWS_ENDPOINT_URL for an "
        "S3-compatible service)",
        loc.url,
    )
