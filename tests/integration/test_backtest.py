"""tastyrec.backtest: a strategy over each day / symbol-day, on a process pool and on Dask."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import polars as pl
import pytest

import tastyrec
from tastyrec import BacktestError, Quote, ReplayStreamer, Trade
from tastyrec.objectstore import S3Location, s3_filesystem, upload
from tests.integration.s3server import S3Server
from tests.integration.sample_days import copy_sample_days
from tests.integration.waits import WAIT_S

DAYS = [date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)]
BAD_DAY = date(2026, 11, 22)


async def count_quotes(streamer: ReplayStreamer) -> dict[str, object]:
    """Quotes of the slice, and the receipt times bounding them (the slice's own day)."""
    n, symbols, first, last = 0, set(), None, None
    async for quote in streamer.listen(Quote):
        n += 1
        symbols.add(quote.event_symbol)
        first = streamer.time_ns if first is None else first
        last = streamer.time_ns
    if streamer.time is not None and streamer.time.date() == BAD_DAY and "SPY" in symbols:
        raise RuntimeError("this strategy fails on SPY on 2026-11-22")
    return {"quotes": n, "symbols": len(symbols), "first_ns": first, "last_ns": last}


async def subscribes_itself(streamer: ReplayStreamer) -> int:
    await streamer.subscribe(Trade, ["*"])
    return sum([1 async for _ in streamer.listen(Trade)])


def plain_number(streamer: ReplayStreamer) -> float:
    return 1.5


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample_days(tmp_path_factory.mktemp("days"), len(DAYS))


def spawn_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))


def expected_quotes(days: Path) -> pl.DataFrame:
    return (
        tastyrec.scan(days, Quote)
        .group_by("date", "event_symbol")
        .agg(pl.len().alias("quotes"))
        .collect()
    )


def check_symbol_days(result: pl.DataFrame, days: Path) -> None:
    expected = expected_quotes(days)
    assert result.columns[:2] == ["day", "symbol"] and result.columns[-2:] == ["error", "seconds"]
    assert result.height == expected.height == 5 * len(DAYS)
    assert result.select("day", "symbol").rows() == sorted(
        expected.select("date", "event_symbol").rows()
    )
    failed = result.filter(pl.col("error").is_not_null())
    # one failure, reported on its row; every other symbol-day has its result
    assert failed.select("day", "symbol").rows() == [(BAD_DAY, "SPY")]
    assert "RuntimeError: this strategy fails on SPY" in failed["error"][0]
    ok = result.filter(pl.col("error").is_null())
    joined = ok.join(expected, left_on=["day", "symbol"], right_on=["date", "event_symbol"])
    assert joined.height == ok.height and (joined["quotes"] == joined["quotes_right"]).all()
    assert (ok["symbols"] == 1).all()
    # each task replayed its own day only
    for row in ok.iter_rows(named=True):
        start = tastyrec.storage.layout.day_end_ns(row["day"]) - 86_400 * 10**9
        assert start <= row["first_ns"] <= row["last_ns"] < start + 86_400 * 10**9


def test_symbol_days_on_a_process_pool(days: Path) -> None:
    with spawn_pool() as pool:
        result = tastyrec.backtest(
            count_quotes, days, executor=pool, by="symbol-day", types=[Quote]
        )
    check_symbol_days(result, days)


def on_dask(recording: str | Path) -> tuple[pl.DataFrame, dict[str, str | None]]:
    """``backtest`` of :func:`count_quotes` per symbol-day over ``recording`` on a real
    ``dask.distributed.LocalCluster`` (2 worker processes of 1 thread); the result and each
    worker's ``AWS_ENDPOINT_URL``."""
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    # the workers cannot import this test module: its functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                memory_limit="1GiB",
            ) as cluster,
            distributed.Client(cluster, timeout=WAIT_S) as client,
        ):
            client.wait_for_workers(2, timeout=WAIT_S)
            result = tastyrec.backtest(
                count_quotes,
                recording,
                executor=client.get_executor(),
                by="symbol-day",
                types=[Quote],
            )
            endpoints = client.run(os.environ.get, "AWS_ENDPOINT_URL")
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return result, endpoints


def test_symbol_days_on_a_dask_local_cluster(days: Path) -> None:
    result, endpoints = on_dask(days)
    assert len(endpoints) == 2
    check_symbol_days(result, days)


def test_symbol_days_over_s3_on_a_dask_local_cluster(days: Path, s3: S3Server) -> None:
    """The same backtest with the recording in a bucket (moto on 127.0.0.1): each worker process
    reads its own slices from ``s3://``. Workers read the AWS configuration from their own
    environment (no credential travels with a task): the ``s3`` fixture sets the AWS_*
    variables in this process before the cluster starts, and the spawned workers inherit them
    -- on a real cluster, setting them where the workers run is the user's job
    (docs/object-storage.md)."""
    root = S3Location(s3.bucket, "days")
    fs = s3_filesystem()
    for file in sorted(days.rglob("*.parquet")):
        upload(file, root.join(*file.relative_to(days).parts), fs=fs)
    result, endpoints = on_dask(root.url)
    assert list(endpoints.values()) == [s3.endpoint] * 2  # it reached both workers
    check_symbol_days(result, days)
    here = tastyrec.backtest(count_quotes, days, by="symbol-day", types=[Quote])
    assert result.drop("seconds").equals(here.drop("seconds"))  # what the local copy gives


def test_days_serially_with_symbols_and_dates(days: Path) -> None:
    result = tastyrec.backtest(
        count_quotes,
        days,
        types=[Quote],
        symbols=["QQQ", "AAPL"],
        start=date(2026, 11, 22),
        end=date(2026, 11, 23),
    )
    assert result["day"].to_list() == DAYS[1:] and result["symbol"].null_count() == 2
    assert result["error"].null_count() == 2
    assert result["quotes"].to_list() == [2 * 191, 2 * 191]
    assert result["symbols"].to_list() == [2, 2]


def test_a_strategy_may_subscribe_itself_and_return_a_plain_value(days: Path) -> None:
    trades = tastyrec.scan(days, Trade).group_by("date").agg(pl.len()).sort("date")
    result = tastyrec.backtest(subscribes_itself, days)
    assert result.columns == ["day", "symbol", "result", "error", "seconds"]
    assert result["result"].to_list() == trades.collect()["len"].to_list()
    plain = tastyrec.backtest(plain_number, days, types=[Quote], end=date(2026, 11, 21))
    assert plain["result"].to_list() == [1.5]


def test_raise_errors_keeps_the_results(days: Path) -> None:
    with pytest.raises(BacktestError, match="1 of 15 backtest tasks failed") as info:
        tastyrec.backtest(count_quotes, days, by="symbol-day", types=[Quote], raise_errors=True)
    assert info.value.results.height == 15


def test_a_closure_cannot_travel_and_says_so_per_day(days: Path) -> None:
    async def local(streamer: ReplayStreamer) -> int:  # not picklable
        return 1

    with spawn_pool() as pool:
        result = tastyrec.backtest(local, days, executor=pool, types=[Quote])
    assert result.height == 3 and result["error"].str.contains("pickle").all()


def test_bad_arguments_are_clear(days: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs types"):
        tastyrec.backtest(count_quotes, days, by="symbol-day")
    with pytest.raises(ValueError, match="by must be"):
        tastyrec.backtest(count_quotes, days, by="week")  # type: ignore[arg-type]
    with pytest.raises(tastyrec.StorageError, match="no recording"):
        tastyrec.backtest(count_quotes, tmp_path / "nope")
