"""Partition dates (America/New_York, DST days), file names, path safety."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from tastyrec.exceptions import SchemaError
from tastyrec.storage import layout

NS = 1_000_000_000


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * NS


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ("2026-11-21T04:59:59+00:00", "2026-11-20"),  # EST: midnight is 05:00 UTC
        ("2026-11-21T05:00:00+00:00", "2026-11-21"),
        ("2026-07-01T03:59:59+00:00", "2026-06-30"),  # EDT: midnight is 04:00 UTC
        ("2026-07-01T04:00:00+00:00", "2026-07-01"),
        ("2026-03-08T04:59:59+00:00", "2026-03-07"),  # spring forward day starts in EST
        ("2026-03-08T05:00:00+00:00", "2026-03-08"),
        ("2026-03-09T03:59:59+00:00", "2026-03-08"),  # ... and ends in EDT
        ("2026-03-09T04:00:00+00:00", "2026-03-09"),
        ("2026-11-01T03:59:59+00:00", "2026-10-31"),  # fall back day starts in EDT
        ("2026-11-02T04:59:59+00:00", "2026-11-01"),  # ... and ends in EST
        ("2026-11-02T05:00:00+00:00", "2026-11-02"),
    ],
)
def test_partition_date_is_the_new_york_date(utc, expected):
    assert layout.partition_date(ns(utc)) == date.fromisoformat(expected)
    assert layout.partition_date(ns(utc) + NS - 1) == date.fromisoformat(expected)


@pytest.mark.parametrize(
    ("day", "hours"), [("2026-03-08", 23), ("2026-11-01", 25), ("2026-11-21", 24)]
)
def test_day_end_on_dst_days(day, hours):
    d = date.fromisoformat(day)
    end = layout.day_end_ns(d)
    start = layout.day_end_ns(date.fromordinal(d.toordinal() - 1))
    assert (end - start) // (3600 * NS) == hours
    assert layout.partition_date(end - 1) == d
    assert layout.partition_date(end) == date.fromordinal(d.toordinal() + 1)


def test_file_names_sort_by_time_and_differ_by_session():
    t = ns("2026-11-21T14:30:00+00:00")
    a = layout.file_name(t + 5, "aaaaaaaa", 1)
    b = layout.file_name(t + 6, "00000000", 1)
    c = layout.file_name(t + NS * 3600, "00000000", 2)
    assert a == "20261121T143000.000000005Z-aaaaaaaa-00001"
    assert sorted([c, b, a]) == [a, b, c]
    assert layout.file_name(t, "aaaaaaaa", 1) != layout.file_name(t, "bbbbbbbb", 1)


def test_paths_and_journal_mapping(tmp_path: Path):
    d = date(2026, 11, 21)
    p = layout.parquet_path(tmp_path, "Quote", d, "x")
    assert p == tmp_path / "Quote" / "date=2026-11-21" / "x.parquet"
    j = layout.journal_path(tmp_path, "Quote", d, "x")
    assert j == tmp_path / "_journal" / "Quote" / "date=2026-11-21" / "x.arrows"
    assert layout.parquet_for_journal(tmp_path, j) == p
    with pytest.raises(SchemaError):
        layout.parquet_for_journal(tmp_path, tmp_path / "elsewhere" / "x.arrows")


@pytest.mark.parametrize("bad", ["", "..", "../Quote", "Quote/x", "quote", "SPY{=5m}", "/etc"])
def test_only_type_names_become_paths(tmp_path: Path, bad):
    with pytest.raises(SchemaError):
        layout.parquet_path(tmp_path, bad, date(2026, 1, 2), "x")
