"""Which files of one partition are current: the compaction rule, local or on object storage.

A partition (``<root>/<EventType>/date=YYYY-MM-DD``) holds committed files (final
``*.parquet`` names; names starting with ``.`` are never files of the recording). A compacted
file (``<stamp>Z-compact<hex>-<seq>.parquet``) names the files it replaces in its key-value
metadata (:data:`COMPACTED_FROM_KEY`, a JSON list of names in the same folder): those are
hidden from the moment it exists, so a listing holds the old files or the new one, never both
and never neither. Replaced files still present beside their published compacted file are the
trace of a compaction killed between publishing and deleting: :func:`current_files` finishes it
(deletes them: roll forward; see :mod:`tastyrec.catalog`, "Interrupted compactions").

The rule is written once here, over :class:`PartitionListing`: the names of one partition, the
footer of one of its files, and deleting one. :class:`LocalPartition` (a folder) and
:class:`ObjectPartition` (a key prefix read through pyarrow's S3 filesystem, its names listed
beforehand by :func:`tastyrec.objectstore.list_parquet`) are the two sides;
:mod:`tastyrec.catalog` lists recordings with them.

This module imports the standard library and :mod:`tastyrec.exceptions` (pyarrow when a
compacted file's footer is read), so listing files costs no pyarrow import.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from ..exceptions import StorageError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = (
    "COMPACTED_FROM_KEY",
    "COMPACT_SESSION_PREFIX",
    "LocalPartition",
    "ObjectPartition",
    "PartitionListing",
    "compacted_from",
    "current_files",
    "is_compacted",
)

#: Key-value metadata key of a compacted file: JSON list of the file names it replaces.
COMPACTED_FROM_KEY: Final = b"tastyrec.compacted_from"
#: Compacted files carry ``compact<hex>`` where a recorder's files carry the session id.
COMPACT_SESSION_PREFIX: Final = "compact"
_PARQUET_SUFFIX: Final = ".parquet"

logger = logging.getLogger(__name__)


class PartitionListing(Protocol):
    """The files of one partition folder, wherever it is stored."""

    def names(self) -> list[str]:
        """Names of the committed files (``*.parquet``, none starting with ``.``); ``[]`` if
        the partition is gone."""
        ...

    def footer_metadata(self, name: str) -> dict[bytes, bytes]:
        """The Parquet key-value metadata of file ``name``.

        Raises:
            FileNotFoundError: the file is gone.
            OSError, ValueError: it cannot be read.
        """
        ...

    def delete(self, name: str) -> None:
        """Delete file ``name``.

        Raises:
            FileNotFoundError: it is already gone.
            OSError: it cannot be deleted.
        """
        ...

    def where(self, name: str = "") -> str:
        """The folder, or its file ``name``, as users write it (a path or an ``s3://`` URL)."""
        ...


@dataclass(frozen=True)
class LocalPartition:
    """A partition folder on local disk."""

    folder: Path

    def names(self) -> list[str]:
        try:
            return [
                e.name
                for e in os.scandir(self.folder)
                if e.name.endswith(_PARQUET_SUFFIX) and not e.name.startswith(".") and e.is_file()
            ]
        except FileNotFoundError:
            return []

    def footer_metadata(self, name: str) -> dict[bytes, bytes]:
        import pyarrow.parquet as pq  # here: listing files must not cost pyarrow's import

        return pq.read_metadata(self.folder / name).metadata or {}

    def delete(self, name: str) -> None:
        (self.folder / name).unlink()

    def where(self, name: str = "") -> str:
        return str(self.folder / name) if name else str(self.folder)


@dataclass(frozen=True)
class ObjectPartition:
    """A partition key prefix on object storage: ``folder`` is ``bucket/key/prefix`` (what
    pyarrow's S3 filesystem takes), ``listed`` the names found under it."""

    fs: pafs.S3FileSystem
    folder: str
    listed: tuple[str, ...]

    def names(self) -> list[str]:
        return [n for n in self.listed if n.endswith(_PARQUET_SUFFIX) and not n.startswith(".")]

    def footer_metadata(self, name: str) -> dict[bytes, bytes]:
        import pyarrow.parquet as pq

        return pq.read_metadata(f"{self.folder}/{name}", filesystem=self.fs).metadata or {}

    def delete(self, name: str) -> None:
        self.fs.delete_file(f"{self.folder}/{name}")

    def where(self, name: str = "") -> str:
        return f"s3://{self.folder}/{name}" if name else f"s3://{self.folder}"


def is_compacted(name: str) -> bool:
    """Whether a file name is that of a compacted file."""
    parts = name.split("-")
    return len(parts) >= 3 and parts[-2].startswith(COMPACT_SESSION_PREFIX)


def compacted_from(partition: PartitionListing, name: str) -> list[str] | None:
    """The names compacted file ``name`` replaces (``[]`` if none are recorded; ``None`` if it
    is gone).

    Raises:
        StorageError: the footer is unreadable or its list is malformed.
    """
    try:
        meta = partition.footer_metadata(name)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
        raise StorageError(
            f"cannot read the footer of the compacted file {partition.where(name)!r}: {exc}; "
            "if it is damaged, delete it only if the files it replaces are still there"
        ) from exc
    raw = meta.get(COMPACTED_FROM_KEY)
    if raw is None:
        return []
    import json  # here: only compacted files need it, and `tastyrec sql` starts without it

    try:
        names = json.loads(raw)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StorageError(f"malformed {COMPACTED_FROM_KEY.decode()} in {partition.where(name)!r}")
    return [n for n in names if "/" not in n and n != name]


def current_files(partition: PartitionListing) -> tuple[list[str], set[str]]:
    """(names of the current files, names that compacted files replace) of one partition.

    Current files are sorted by name. Replaced files still present are deleted first (an
    interrupted compaction finished); where that is not allowed they stay, hidden all the same.

    Raises:
        StorageError: a compacted file's footer cannot be read.
    """
    names = sorted(partition.names())
    hidden: set[str] = set()
    for name in names:
        if is_compacted(name):
            replaced = compacted_from(partition, name)
            if replaced is None:  # deleted by a newer compaction while we listed
                continue
            hidden.update(replaced)
    leftovers = hidden.intersection(names)
    if leftovers:
        _roll_forward(partition, leftovers)
    return [n for n in names if n not in hidden], hidden


def _roll_forward(partition: PartitionListing, names: set[str]) -> None:
    """Finish a compaction interrupted between publishing and deleting: delete the files that
    a published compacted file replaces.

    The compacted file was verified before it got its final name, so its rows are all there;
    deleting the replaced files is what the compaction would have done next. A compaction
    running right now deletes them too: whoever comes second finds nothing. A read-only
    recording is left as it is (the listing hides the files anyway).
    """
    removed = 0
    for name in sorted(names):
        try:
            partition.delete(name)
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:  # read-only medium, no permission: readers still hide them
            logger.debug("cannot finish the compaction in %s: %s", partition.where(), exc)
            return
    if removed:
        logger.info(
            "finished an interrupted compaction in %s: deleted %d replaced files",
            partition.where(),
            removed,
        )
