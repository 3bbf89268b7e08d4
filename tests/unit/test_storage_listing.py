"""The compaction rule of one partition over the listing seam, with no files at all."""

from __future__ import annotations

import json

import pytest

from tastyrec.exceptions import StorageError
from tastyrec.storage import listing

RAW = [
    "20261120T150000.000000000Z-aaaa0001-00001.parquet",
    "20261120T150100.000000000Z-aaaa0001-00002.parquet",
]
MERGED = "20261120T150000.000000000Z-compact0000beef-00001.parquet"


class Fake:
    """A partition in memory: names, footers, deletions (some refused)."""

    def __init__(self, footers: dict[str, dict[bytes, bytes]], refuse: bool = False) -> None:
        self.footers = footers
        self.refuse = refuse
        self.deleted: list[str] = []

    def names(self) -> list[str]:
        return list(self.footers)

    def footer_metadata(self, name: str) -> dict[bytes, bytes]:
        if name not in self.footers:
            raise FileNotFoundError(name)
        return self.footers[name]

    def delete(self, name: str) -> None:
        if self.refuse:
            raise PermissionError(name)
        self.deleted.append(name)
        del self.footers[name]

    def where(self, name: str = "") -> str:
        return f"mem://part/{name}"


def test_replaced_files_are_hidden_and_deleted_once_the_merged_file_exists() -> None:
    part = Fake(
        {**{n: {} for n in RAW}, MERGED: {listing.COMPACTED_FROM_KEY: json.dumps(RAW).encode()}}
    )
    visible, hidden = listing.current_files(part)
    assert visible == [MERGED] and hidden == set(RAW)
    assert part.deleted == sorted(RAW)  # the interrupted compaction is finished


def test_a_partition_that_refuses_deletion_still_hides_the_replaced_files() -> None:
    part = Fake(
        {**{n: {} for n in RAW}, MERGED: {listing.COMPACTED_FROM_KEY: json.dumps(RAW).encode()}},
        refuse=True,
    )
    visible, _ = listing.current_files(part)
    assert visible == [MERGED] and set(RAW) <= set(part.footers)


def test_without_a_compacted_file_every_committed_name_is_current() -> None:
    part = Fake({n: {} for n in RAW})
    assert listing.current_files(part) == (RAW, set())


def test_a_malformed_replacement_list_names_the_file() -> None:
    part = Fake({MERGED: {listing.COMPACTED_FROM_KEY: b"{not json"}})
    with pytest.raises(StorageError, match=f"mem://part/{MERGED}"):
        listing.current_files(part)
