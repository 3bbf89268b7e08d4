"""A URL is never a local path, on the command line (issue 19): ``tastyrec record --out
s3://bucket/rec`` used to exit 0 having written a folder named ``s3:``, and ``tastyrec sql
--data s3://...`` read it back. Every option and argument naming a recording now refuses it with
exit 2, names the option, and leaves no folder behind -- except ``sql``, ``info``,
``replay`` and ``compact``, which now take ``s3://`` (and refuse other schemes). Real
``tastyrec`` subprocesses."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Cli
from tests.integration.test_record_cli import assert_one_clear_error

URL = "s3://bucket/rec"

COMMANDS = {
    # s3:// is a destination now (tests/integration/test_record_s3.py); other schemes are not
    "record --out": (["record", "--demo", "--symbols", "SPY", "--out", "gs://bucket/rec"], "--out"),
    "recover PATH": (["recover", URL], "PATH"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_object_storage_url_is_refused_with_exit_2(cli: Cli, name: str) -> None:
    args, option = COMMANDS[name]
    proc = cli.run(*args)
    assert proc.popen.returncode == 2, proc.stderr
    url = next(a for a in args if "://" in a)
    assert_one_clear_error(
        proc.stderr, option, f"{url!r}: object storage URLs", "not supported yet; give a local"
    )
    assert not (cli.workdir / "s3:").exists()


#: ``sql``, ``info``, ``replay``, ``compact`` take ``s3://`` (tests/integration/test_read_s3.py);
#: other URLs are refused
READERS = {
    "sql --data": (["sql", "SELECT 1", "--data", "gs://bucket/rec"], "--data"),
    "info PATH": (["info", "gs://bucket/rec"], "PATH"),
    "replay PATH": (["replay", "gs://bucket/rec"], "PATH"),
    "compact PATH": (["compact", "gs://bucket/rec"], "PATH"),
}


@pytest.mark.parametrize("name", list(READERS))
def test_readers_of_object_storage_refuse_other_urls_with_exit_2(cli: Cli, name: str) -> None:
    args, option = READERS[name]
    proc = cli.run(*args)
    assert proc.popen.returncode == 2, proc.stderr
    assert_one_clear_error(proc.stderr, option, "object storage URLs (gs://...)", "not supported")
    assert not (cli.workdir / "gs:").exists()


def test_a_local_folder_named_like_a_scheme_is_still_reachable(cli: Cli) -> None:
    """The way out the message gives (./s3:/...) is a local folder, recorded into and read."""
    out = "./s3:/rec"
    record = cli.run("record", "--demo", "--symbols", "SPY", "--for", "1s", "--out", out)
    assert record.popen.returncode == 0, record.stderr
    assert (cli.workdir / "s3:" / "rec").is_dir()
    info = cli.run("sql", "SELECT count(*) > 0 AS ok FROM Quote", "--data", out, "--format", "csv")
    assert info.popen.returncode == 0, info.stderr
    assert info.stdout.splitlines() == ["ok", "true"]
