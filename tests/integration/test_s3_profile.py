"""Every reader of ``s3://`` with credentials from an AWS profile only: no key variable in the
environment, ``AWS_PROFILE=p`` and a credentials file (``AWS_SHARED_CREDENTIALS_FILE``) holding
``p``'s keys, as the AWS CLI takes them.

The server checks signatures (moto with IAM auth on), so a reader that does not find the
profile's keys fails instead of reading anonymously; the profile ``bad`` (same key id, wrong
secret) shows it. Each reader runs in a fresh process: the AWS SDKs read the files once per
process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import duckdb
import pytest

from tests.integration.s3server import WAIT_S, S3Server, iam_access_key, running_s3_server

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
URL = "s3://tastyrec-test/rec"
WRONG = "wrong-secret-Mm3Nn5Pp7Qq9"

READER = textwrap.dedent(
    """
    import asyncio, sys
    import polars as pl
    import tastyrec
    from tastyrec import ReplayStreamer
    from tastyrec.events import Quote

    url, how = sys.argv[1], sys.argv[2]
    if how == "scan":
        print(tastyrec.scan(url, Quote).select(pl.len()).collect().item())
    elif how == "scan-symbols":
        print(tastyrec.scan(url, Quote, symbols=["SPY"]).select(pl.len()).collect().item())
    elif how == "polars-direct":  # what polars_storage_options' docstring promises a user
        from tastyrec.objectstore import polars_storage_options
        options = polars_storage_options()
        quotes = pl.scan_parquet(url + "/Quote/*/*.parquet", storage_options=options)
        print(quotes.select(pl.len()).collect().item())
    elif how == "reprs":  # after a query: what a log or a traceback could show
        from tastyrec.objectstore import polars_credential_provider
        frame = tastyrec.scan(url, Quote)
        n = frame.select(pl.len()).collect().item()
        print(n, repr(polars_credential_provider()), repr(frame), frame.explain())
    elif how == "connect":
        print(tastyrec.connect(url).sql("SELECT count(*) FROM Quote").fetchall()[0][0])
    elif how == "replay":
        async def count() -> int:
            async with ReplayStreamer(url) as replay:
                await replay.subscribe(Quote, ["SPY", "QQQ"])
                return len([q async for q in replay.listen(Quote)])
        print(asyncio.run(count()))
    """
)


class Lab:
    """The server, the profile files and the environment of a profile-only reader."""

    def __init__(self, server: S3Server, tmp_path: Path, key: dict[str, str]) -> None:
        self.server = server
        self.key = key
        credentials = tmp_path / "credentials"
        credentials.write_text(
            f"[p]\naws_access_key_id = {key['AccessKeyId']}\n"
            f"aws_secret_access_key = {key['SecretAccessKey']}\n\n"
            f"[bad]\naws_access_key_id = {key['AccessKeyId']}\n"
            f"aws_secret_access_key = {WRONG}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env |= {
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "COLUMNS": "200",
        }

    def run(self, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            env={**self.env, "AWS_PROFILE": profile},
            capture_output=True,
            text=True,
            timeout=WAIT_S * 6,
            check=False,
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """moto with IAM auth on (the first 4 requests unchecked: the bucket, then the IAM user, its
    policy and its key), the sample recording uploaded with that key."""
    tmp_path = tmp_path_factory.mktemp("profile")
    with running_s3_server(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as server:
        key = iam_access_key(server, "analyst")
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        for file in sorted(SAMPLE.rglob("*.parquet")):
            s3.put_object(
                Bucket=server.bucket,
                Key=f"rec/{file.relative_to(SAMPLE).as_posix()}",
                Body=file.read_bytes(),
            )
        yield Lab(server, tmp_path, key)


def local_count(where: str = "") -> int:
    con = duckdb.connect()
    files = str(SAMPLE / "Quote" / "*" / "*.parquet")
    return int(con.sql(f"SELECT count(*) FROM read_parquet('{files}') {where}").fetchall()[0][0])


@pytest.mark.parametrize(
    "how", ["scan", "scan-symbols", "polars-direct", "reprs", "connect", "replay"]
)
def test_python_readers_take_the_keys_of_aws_profile(lab: Lab, how: str) -> None:
    good = lab.run("p", "-c", READER, URL, how)
    assert good.returncode == 0, good.stderr
    expected = local_count("WHERE event_symbol = 'SPY'" if how == "scan-symbols" else "")
    if how == "replay":  # the SPY and QQQ quotes
        expected = local_count("WHERE event_symbol IN ('SPY', 'QQQ')")
    assert int(good.stdout.split()[0]) == expected > 0
    bad = lab.run("bad", "-c", READER, URL, how)
    assert bad.returncode != 0, bad.stdout
    for text in (good.stdout, good.stderr, bad.stdout, bad.stderr):
        assert WRONG not in text and lab.key["SecretAccessKey"] not in text


def test_sql_cli_takes_the_keys_of_aws_profile(lab: Lab) -> None:
    query = "SELECT count(*) AS n FROM Quote"
    good = lab.run("p", "-m", "tastyrec", "sql", query, "--data", URL, "--format", "csv")
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["n", str(local_count())]
    bad = lab.run("bad", "-m", "tastyrec", "sql", query, "--data", URL, "--format", "csv")
    assert bad.returncode != 0
    assert WRONG not in bad.stdout + bad.stderr
