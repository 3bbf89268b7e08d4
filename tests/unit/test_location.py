"""A recording's location (issues 18 and 19): a URL is never a local path, and a missing
recording is one error, ``RecordingNotFound`` (a ``StorageError`` and a ``FileNotFoundError``),
from every reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import tastyrec
from tastyrec import catalog
from tastyrec._location import existing_recording, recording_path, url_scheme
from tastyrec.events import Quote
from tastyrec.exceptions import RecordingNotFound, StorageError, UnsupportedLocation
from tastyrec.query import compact, inventory
from tastyrec.record import Recorder
from tastyrec.replay import ReplayStreamer, replay_frames
from tastyrec.replay.feed import ReplayFeed

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def open_replay(location: Any) -> None:
    async def run() -> None:
        async with ReplayStreamer(location):
            pass

    anyio.run(run, backend="asyncio")


#: every reader of a recording, called on a location
READERS: dict[str, Callable[[Any], object]] = {
    "connect": tastyrec.connect,
    "scan": lambda p: tastyrec.scan(p, Quote),
    "ReplayStreamer": open_replay,
    "replay_frames": lambda p: next(replay_frames(p, Quote), None),
    "ReplayFeed (serve)": ReplayFeed,
    "compact": compact,
    "inventory (info)": inventory,
}
#: what takes a location to write to, or lists it
OTHERS: dict[str, Callable[[Any], object]] = {
    "Recorder": Recorder,
    "catalog.recording_files": lambda p: catalog.recording_files(p, "Quote"),
    "catalog.event_types": catalog.event_types,
    "catalog.partitions": lambda p: catalog.partitions(p, "Quote"),
}
URLS = ["s3://bucket/rec", "S3://bucket", "gs://bucket/prefix/", "file:///tmp/rec", "s3a://b/r"]


@pytest.mark.parametrize("url", URLS)
def test_a_url_is_refused_not_turned_into_a_folder(url: str) -> None:
    for location in (url, Path(url)):  # pathlib folds s3:// into s3:/: still a URL
        with pytest.raises(UnsupportedLocation, match="object storage URLs") as info:
            recording_path(location)
        assert "are not supported yet; give a local folder" in str(info.value)
        assert isinstance(info.value, StorageError) and isinstance(info.value, ValueError)
    assert url_scheme(url) == url.split(":")[0].lower()


#: readers that read ``s3://`` (tests/integration/test_read_s3.py): other schemes are refused
S3_READERS = (
    "connect",
    "scan",
    "ReplayStreamer",
    "replay_frames",
    "ReplayFeed (serve)",
    "compact",
    "inventory (info)",
    "Recorder",  # writes into s3:// (tests/integration/test_record_s3.py)
)


@pytest.mark.parametrize("name", [*READERS, *OTHERS])
def test_every_entry_point_refuses_a_url_and_creates_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    call = {**READERS, **OTHERS}[name]
    url = "gs://bucket/rec" if name in S3_READERS else "s3://bucket/rec"
    with pytest.raises(UnsupportedLocation, match=rf"(?:'{url}': object storage URLs|gs://)"):
        call(url)
    assert list(tmp_path.iterdir()) == []  # no folder named "s3:" or "gs:"


@pytest.mark.parametrize(
    "url", ["s3://b/rec", "s3://ab/rec", "s3://bucket:key@secret/rec", "s3:///rec"]
)
def test_readers_refuse_a_malformed_s3_url_before_any_request(url: str) -> None:
    with pytest.raises(UnsupportedLocation) as info:
        catalog.reading_location(url)
    assert "secret" not in str(info.value)


def test_readers_take_an_s3_url_as_a_location() -> None:
    from tastyrec.objectstore import S3Location

    assert catalog.reading_location("s3://bucket/rec/") == S3Location("bucket", "rec")
    assert catalog.reading_location("s3a://bucket") == S3Location("bucket", "")
    assert catalog.reading_location(SAMPLE) == SAMPLE
    assert catalog.existing_location(SAMPLE) == SAMPLE


def test_local_paths_pass() -> None:
    for local in ("data", "/tmp/rec", "C:/data", "rec:2026", Path("x") / "y"):
        assert recording_path(local) == Path(local)
        assert url_scheme(local) is None
    assert existing_recording(SAMPLE) == SAMPLE
    # a local folder named like a scheme, as the message says: absolute, so that pathlib's
    # folding (./s3:/rec -> s3:/rec) does not make it a URL when it is checked again
    local = recording_path("./s3:/rec")
    assert local == Path.cwd() / "s3:" / "rec"
    assert recording_path(local) == local


@pytest.mark.parametrize("name", list(READERS))
def test_a_missing_recording_is_one_error_everywhere(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RecordingNotFound, match="no recording at .*: there is no folder") as info:
        READERS[name](missing)
    assert isinstance(info.value, StorageError) and isinstance(info.value, FileNotFoundError)
    assert "give the folder `tastyrec record --out` wrote" in str(info.value)
    assert info.value.filename == str(missing)
    assert not missing.exists()  # reading never creates it

    a_file = tmp_path / "file.parquet"
    a_file.write_bytes(b"")
    with pytest.raises(RecordingNotFound, match="is a file, not a recording folder"):
        READERS[name](a_file)


def test_both_except_styles_catch_it(tmp_path: Path) -> None:
    try:
        tastyrec.connect(tmp_path / "nope")
    except FileNotFoundError as exc:  # what replay raised before
        assert "no recording at" in str(exc)
    try:
        open_replay(tmp_path / "nope")
    except StorageError as exc:  # what connect and scan raised before
        assert "no recording at" in str(exc)
