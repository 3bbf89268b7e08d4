"""Recordings on S3-compatible object storage: locations, the filesystem, uploads, listing, reading.

The one place tastyrec talks to object storage (``docs/object-storage.md``): the recorder's
uploader (:mod:`tastyrec.record.upload`) and the readers (the catalog, the DuckDB views, replay)
stand on it. Size: over 900 lines because every S3 call, its retry and its redaction are kept
here, so that nothing else holds a credential or a raw S3 error.

* :func:`parse_location` turns what a user typed (``--out``, ``--data``) into a local
  :class:`~pathlib.Path` or an :class:`S3Location`; any other ``scheme://`` is refused, so a URL
  never becomes a local folder named ``s3:``.
* :func:`s3_filesystem` builds :class:`pyarrow.fs.S3FileSystem` from the standard AWS
  configuration. Credentials (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
  ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` with ``~/.aws/credentials`` and ``~/.aws/config``) are
  read by the AWS SDK inside pyarrow itself and never pass through tastyrec, so no value of ours
  can print them; what the SDK built into pyarrow does *not* read is filled in here:
  ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (or ``endpoint_url`` in the profile) for
  S3-compatible services, becoming ``endpoint_override`` and ``scheme``, and the region from
  ``AWS_REGION``/``AWS_DEFAULT_REGION``.
* :func:`s3_client` is the one boto3 S3 client, with the endpoint and region of
  :func:`s3_config` and the keys of boto3's standard chain (the AWS CLI's: the same variables,
  ``AWS_PROFILE`` and files), for the requests pyarrow cannot send: conditional writes
  (:func:`put_if`, :func:`delete_if`: ``If-None-Match: *`` creates only if absent, ``If-Match``
  replaces or deletes only an unchanged object; the store decides atomically), which the
  compaction lease stands on (:mod:`tastyrec.query._compact_s3`). A store without them answers
  501: :class:`ConditionalWriteUnsupported`.
* :func:`polars_storage_options` and :func:`polars_credential_provider` configure polars' own
  S3 reader (``scan()``, replay's rows): the endpoint and region, and boto3's credential chain,
  so ``AWS_PROFILE`` works there too (polars' Rust reader alone reads the key variables only).
* :func:`upload` puts a whole local file under its final key so that the key never names a
  partial object: the bytes go to a hidden staging key beside it (one PUT, or a multipart upload
  for large files), then the store copies them to the final key (CopyObject: atomic, no bytes
  over the network again). Transient failures (connection refused/reset, 5xx, timeouts) are
  retried with exponential backoff through an injectable ``sleep``; the size is confirmed with a
  HEAD before returning, so the caller may then delete its local copy.
* :func:`list_parquet` lists ``<EventType>/date=YYYY-MM-DD/*.parquet`` (the local layout of
  :mod:`tastyrec.storage.layout`) walking key prefixes one level at a time, so a query for a day
  lists that day's prefix, never the bucket.
* :func:`register_duckdb` lets DuckDB read ``s3://`` through fsspec's ``ArrowFSWrapper`` around
  the same pyarrow filesystem: DuckDB's own ``httpfs`` extension is downloaded from DuckDB's
  servers at run time, which machines that only reach package registries cannot do
  (docs/object-storage.md). fsspec is a small pure-Python package; s3fs would bring aiobotocore and
  botocore and a second reading of the AWS configuration that could disagree with pyarrow's.
  :func:`dataset` gives pyarrow (and polars, through ``polars.scan_pyarrow_dataset``) the same.

Why a staging key and a copy rather than uploading to the final key directly: pyarrow's S3 output
stream has no ``abort()`` in Python, and closing it -- which ``with`` does on an exception, and
its destructor tries too, even after a failed request -- *completes* the upload with what it holds
(measured with moto 5.2.6 and pyarrow 26: a ``with`` block that raised after writing 7 MiB of a
larger file left a 7 MiB object; ``test_pyarrow_stream_completes_what_it_has`` keeps that fact
checked). So an
interrupted upload may leave a partial object, but only under its staging name, which
readers never see and the next attempt never reuses (a random token); the copy to the final key
happens only after the staged size was checked. The source is memory-mapped and written in one
call, so nothing of ours runs between opening and closing the stream either. The price is one
server-side copy per file (single CopyObject: files up to 5 GiB, far above a rotation's size) and
staging leftovers after crashes, which ``recover``/``compact`` are to delete
(``docs/object-storage.md``).

Errors are :class:`ObjectStoreError` (a :class:`~tastyrec.exceptions.StorageError`) with the URL and
pyarrow's message, passed through :func:`redact` so that no credential value -- even one a
server echoes back -- reaches a message or a log.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .exceptions import StorageError

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

__all__ = (
    "Backoff",
    "ConditionalWriteUnsupported",
    "delete_if",
    "get_bytes",
    "put_bytes",
    "put_if",
    "s3_client",
    "dataset",
    "open_parquet",
    "polars_credential_provider",
    "polars_storage_options",
    "shared_filesystem",
    "prefix_exists",
    "fsspec_filesystem",
    "ObjectInfo",
    "ObjectStoreError",
    "S3Config",
    "S3Location",
    "is_transient",
    "list_parquet",
    "parse_location",
    "redact",
    "register_duckdb",
    "remove_staging_leftovers",
    "s3_config",
    "s3_filesystem",
    "staging_path",
    "upload",
)

logger = logging.getLogger(__name__)

#: environment variables whose values are secrets: :func:`redact` removes them from any text
SECRET_VARS: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending alnum
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LOOPBACK = ("localhost", "127.", "::1", "[::1]")
#: the suffix of staging objects (:func:`staging_path`)
UPLOADING_SUFFIX: Final = ".uploading"


class ObjectStoreError(StorageError):
    """An object-store operation failed.

    Attributes:
        url: the ``s3://`` URL concerned (never holds credentials).
        transient: the failure may go away by itself (network, 5xx, timeout): retrying makes sense.
    """

    def __init__(self, message: str, *, url: str = "", transient: bool = False) -> None:
        super().__init__(redact(message))
        self.url = url
        self.transient = transient


# -- locations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://<bucket>/<prefix>``: a recording's root (or anything under it) on object storage.

    ``prefix`` has no leading or trailing ``/`` and may be empty (the bucket's root).
    """

    bucket: str
    prefix: str = ""

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ValueError(f"{self.bucket!r} is not an S3 bucket name")
        parts = self.prefix.split("/") if self.prefix else []
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{self.prefix!r} is not a clean key prefix")

    def __str__(self) -> str:
        return f"s3://{self.path}"

    @property
    def url(self) -> str:
        return str(self)

    @property
    def path(self) -> str:
        """``bucket/prefix``: the path pyarrow's S3 filesystem takes."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def join(self, *parts: str) -> S3Location:
        """The location ``parts`` below this one (each part may hold ``/``)."""
        extra = "/".join(p.strip("/") for p in parts if p.strip("/"))
        prefix = "/".join(p for p in (self.prefix, extra) if p)
        return S3Location(self.bucket, prefix)


def parse_location(value: str | os.PathLike[str]) -> Path | S3Location:
    """A local directory or an ``s3://bucket/prefix``; any other ``scheme://`` is an error.

    ``s3a://`` (Hadoop's spelling) is taken as ``s3://``. Credentials in the URL
    (``s3://key:secret@bucket``) are refused without repeating them.

    Raises:
        ValueError: an unsupported scheme, a bad bucket name or key prefix, or credentials in it.
    """
    if isinstance(value, os.PathLike):
        return Path(value)
    match = _SCHEME.match(value)
    if match is None:
        return Path(value)
    scheme = match.group(1).lower()
    if scheme not in ("s3", "s3a"):
        raise ValueError(
            f"{scheme}:// is not supported: give a local directory or s3://bucket/prefix"
        )
    rest = value[match.end() :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise ValueError("credentials do not belong in an s3:// URL: use the AWS_* variables")
    if not bucket:
        raise ValueError(f"{value!r} names no bucket")
    return S3Location(bucket, prefix.strip("/"))


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Config:
    """What tastyrec passes to :class:`pyarrow.fs.S3FileSystem` itself (no credentials).

    Attributes:
        endpoint_override: ``host[:port]`` of an S3-compatible service, or ``None`` for AWS.
        scheme: ``https``, or ``http`` for an ``http://`` endpoint (or a bare loopback one).
        region: from ``AWS_REGION``/``AWS_DEFAULT_REGION``; ``None`` leaves it to the SDK.
    """

    endpoint_override: str | None = None
    scheme: str = "https"
    region: str | None = None


def _profile_endpoint(env: Mapping[str, str]) -> str | None:
    """``endpoint_url`` of the active profile in the AWS config file, if any."""
    path = Path(env.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config").expanduser()
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    section = "default" if profile == "default" else f"profile {profile}"
    if not parser.has_section(section):
        return None
    return parser.get(section, "endpoint_url", fallback=None) or None


def _endpoint(url: str) -> tuple[str, str]:
    """(``host[:port]``, scheme) of an endpoint URL; ``http`` for a bare loopback address."""
    if "://" not in url:
        host = url.strip("/")
        scheme = "http" if host.startswith(_LOOPBACK) else "https"
        url = f"{scheme}://{host}"
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("the S3 endpoint URL holds credentials: use the AWS_* variables")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the S3 endpoint must be an http:// or https:// URL")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("the S3 endpoint URL must have no path (bucket and prefix go in s3://)")
    return parts.netloc, parts.scheme


def s3_config(env: Mapping[str, str] | None = None) -> S3Config:
    """The endpoint and region from the standard AWS configuration.

    ``AWS_ENDPOINT_URL_S3`` wins over ``AWS_ENDPOINT_URL``, which wins over ``endpoint_url`` in the
    profile's section of the AWS config file; ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`` ignores
    all three (the AWS SDKs' rules).

    Raises:
        ValueError: a malformed endpoint URL (the message never repeats its user/password).
    """
    env = os.environ if env is None else env
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return S3Config(region=region)
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or _profile_endpoint(env)
    if not url:
        return S3Config(region=region)
    host, scheme = _endpoint(url)
    return S3Config(endpoint_override=host, scheme=scheme, region=region)


def s3_filesystem(
    config: S3Config | None = None,
    *,
    connect_timeout: float = 5.0,
    request_timeout: float = 30.0,
    sdk_attempts: int = 3,
) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem configured from :func:`s3_config` (the environment by default).

    Credentials are not passed: the AWS SDK inside pyarrow reads them from the environment and the
    profile files by itself, so they exist in no tastyrec object (nor a pickle of one sent to a
    worker process: workers read their own environment). ``sdk_attempts`` bounds the SDK's own
    quick retries; :func:`upload` adds the slower backoff on top.
    """
    import pyarrow.fs as pafs

    config = s3_config() if config is None else config
    return pafs.S3FileSystem(
        region=config.region,
        endpoint_override=config.endpoint_override,
        scheme=config.scheme,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=sdk_attempts),
        # a file smaller than one part goes up as a single PUT, not a one-part multipart upload
        allow_delayed_open=True,
    )


# -- conditional writes (boto3) -----------------------------------------------------------------


class ConditionalWriteUnsupported(ObjectStoreError):
    """The store answered a conditional request (``If-None-Match``/``If-Match``) with 501
    NotImplemented: it cannot create-if-absent or compare-and-swap."""


def s3_client(
    config: S3Config | None = None,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    sdk_attempts: int = 3,
) -> Any:
    """A boto3 S3 client with the endpoint and region of :func:`s3_config` (the environment by
    default), for the requests pyarrow's filesystem cannot send: conditional writes.

    Like :func:`s3_filesystem`, no credential passes through tastyrec: boto3 resolves them by
    the standard chain itself (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
    ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` with ``~/.aws/credentials`` and ``~/.aws/config`` or
    the files ``AWS_SHARED_CREDENTIALS_FILE``/``AWS_CONFIG_FILE`` name), exactly as the AWS CLI
    does. The endpoint is given explicitly (the one :func:`s3_config` chose for pyarrow), with
    path-style addressing as pyarrow uses for a custom endpoint. Checksums are sent only where
    an operation requires them, as pyarrow does (some S3-compatible stores refuse the others).

    Raises:
        ObjectStoreError: the AWS configuration is unusable (e.g. ``AWS_PROFILE`` names no
            profile); the message names no credential.
    """
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = s3_config() if config is None else config
    endpoint = None
    if config.endpoint_override is not None:
        endpoint = f"{config.scheme}://{config.endpoint_override}"
    options = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": sdk_attempts},
        s3={"addressing_style": "path"} if endpoint is not None else None,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    BotoCoreError, _ = _botocore_errors()
    try:
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=config.region, config=options
        )
    except BotoCoreError as exc:
        raise ObjectStoreError(f"configuring the S3 client: {exc}") from None


def _botocore_errors() -> tuple[Any, Any]:
    """botocore's ``BotoCoreError`` (no answer: network, configuration, credentials) and
    ``ClientError`` (the store answered with an error), imported when first needed."""
    errors = _botocore_exceptions()
    return errors.BotoCoreError, errors.ClientError


def _botocore_exceptions() -> Any:
    import botocore.exceptions  # type: ignore[import-untyped]

    return botocore.exceptions


def _boto_status(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, error code) of a botocore ``ClientError``; (0, "") for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return int(status or 0), str(response.get("Error", {}).get("Code", ""))


def _boto_error(action: str, loc: S3Location, exc: BaseException) -> ObjectStoreError:
    """An :class:`ObjectStoreError` from a boto3 failure (redacted, transient or not)."""
    errors = _botocore_exceptions()
    status, code = _boto_status(exc)
    if status == 501 or code == "NotImplemented":
        return ConditionalWriteUnsupported(f"{action} {loc.url}: {exc}", url=loc.url)
    network = (
        errors.EndpointConnectionError,
        errors.ConnectionClosedError,
        errors.ConnectTimeoutError,
        errors.ReadTimeoutError,
    )
    transient = isinstance(exc, network) or status >= 500 or code in ("SlowDown", "RequestTimeout")
    return ObjectStoreError(f"{action} {loc.url}: {exc}", url=loc.url, transient=transient)


def _lost_condition(exc: BaseException) -> bool:
    """Whether a conditional request failed on its condition (another writer won), not on the
    store: 412 PreconditionFailed; 409 ConditionalRequestConflict (AWS: another conditional
    write to the key was in flight); NoSuchKey for an ``If-Match`` on an object deleted
    meanwhile (not NoSuchBucket: that is an error)."""
    status, code = _boto_status(exc)
    lost = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey")
    return status == 412 or code in lost


def put_if(client: Any, loc: S3Location, body: bytes, *, if_match: str | None = None) -> str | None:
    """Write ``body`` under ``loc`` in one request the store decides atomically: create it only
    if no object is there (``If-None-Match: *``), or, with ``if_match``, replace it only if its
    ETag is still ``if_match``. The new object's ETag, or ``None`` when the condition failed
    (another writer got there first).

    Raises:
        ConditionalWriteUnsupported: the store answered 501 NotImplemented.
        ObjectStoreError: any other failure.
    """
    BotoCoreError, ClientError = _botocore_errors()

    condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
    try:
        response = client.put_object(Bucket=loc.bucket, Key=loc.prefix, Body=body, **condition)
    except ClientError as exc:
        if _lost_condition(exc):
            return None
        raise _boto_error("writing", loc, exc) from None
    except BotoCoreError as exc:
        raise _boto_error("writing", loc, exc) from None
    return str(response["ETag"])


def put_bytes(client: Any, loc: S3Location, body: bytes) -> str:
    """Write ``body`` under ``loc`` unconditionally (one PUT); its ETag.

    Raises:
        ObjectStoreError: the write failed.
    """
    BotoCoreError, ClientError = _botocore_errors()

    try:
        response = client.put_object(Bucket=loc.bucket, Key=loc.prefix, Body=body)
    except (ClientError, BotoCoreError) as exc:
        raise _boto_error("writing", loc, exc) from None
    return str(response["ETag"])


def get_bytes(client: Any, loc: S3Location) -> tuple[bytes, str] | None:
    """The object ``loc``'s body and ETag, or ``None`` when there is none.

    Raises:
        ObjectStoreError: the read failed.
    """
    BotoCoreError, ClientError = _botocore_errors()

    try:
        response = client.get_object(Bucket=loc.bucket, Key=loc.prefix)
        return bytes(response["Body"].read()), str(response["ETag"])
    except ClientError as exc:
        if _boto_status(exc)[1] == "NoSuchKey":
            return None
        raise _boto_error("reading", loc, exc) from None
    except BotoCoreError as exc:
        raise _boto_error("reading", loc, exc) from None


def delete_if(client: Any, loc: S3Location, etag: str | None) -> bool:
    """Delete ``loc`` only if its ETag is still ``etag`` (``If-Match``; ``None``: whatever it
    holds): whether it was deleted (``False``: it is gone already or another writer replaced
    it).

    Raises:
        ConditionalWriteUnsupported: the store answered 501 NotImplemented.
        ObjectStoreError: any other failure.
    """
    BotoCoreError, ClientError = _botocore_errors()

    try:
        condition = {"IfMatch": etag} if etag is not None else {}
        client.delete_object(Bucket=loc.bucket, Key=loc.prefix, **condition)
    except ClientError as exc:
        if _lost_condition(exc):
            return False
        raise _boto_error("deleting", loc, exc) from None
    except BotoCoreError as exc:
        raise _boto_error("deleting", loc, exc) from None
    return True


# -- errors ------------------------------------------------------------------------------------


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every credential value of ``env`` (the environment) replaced by ``***``."""
    env = os.environ if env is None else env
    for name in SECRET_VARS:
        value = env.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


# markers in pyarrow's S3 error messages ("AWS Error NETWORK_CONNECTION during ...: curlCode: 7")
_TRANSIENT_MARKERS: Final = (
    "NETWORK_CONNECTION",
    "curlCode",
    "SERVICE_UNAVAILABLE",
    "SLOW_DOWN",
    "THROTTLING",
    "INTERNAL_FAILURE",
    "REQUEST_TIMEOUT",
    "REQUEST_TIME_TOO_SKEWED",
    "NO_SUCH_UPLOAD",  # the upload id vanished (a restarted store): start the upload again
    "HTTP response code: 5",
    "Timeout",
    "timed out",
    "Connection reset",
    "Connection refused",
)


def is_transient(exc: BaseException) -> bool:
    """Whether a failure of pyarrow's S3 filesystem may go away by itself."""
    if isinstance(exc, ObjectStoreError):
        return exc.transient
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    text = str(exc)
    return isinstance(exc, OSError) and any(m in text for m in _TRANSIENT_MARKERS)


def _error(action: str, url: str, exc: BaseException) -> ObjectStoreError:
    return ObjectStoreError(f"{action} {url}: {exc}", url=url, transient=is_transient(exc))


# -- upload ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first_s``, times ``factor`` after each failure, at most ``max_s``.

    ``attempts`` bounds the tries of one :func:`upload` call (the recorder's uploader calls again
    later, so the journal keeps the file meanwhile).
    """

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    attempts: int = 8

    def delays(self) -> Iterator[float]:
        """The ``attempts - 1`` waits between attempts."""
        delay = self.first_s
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_s)
            delay *= self.factor


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object: its ``s3://`` URL, key path (``bucket/key``) and size in bytes."""

    path: str
    size: int

    @property
    def url(self) -> str:
        return f"s3://{self.path}"


def staging_path(final: S3Location, token: str) -> str:
    """Where an upload to ``final`` is written before it is copied there: beside it, named
    ``.<name>.<token>.uploading`` -- hidden from ``*.parquet`` globs, from Spark and from pyarrow
    datasets (leading ``.``), in the same prefix so the same permissions cover it."""
    head, _, name = final.path.rpartition("/")
    return f"{head}/.{name}.{token}{UPLOADING_SUFFIX}"


def _put_once(fs: pafs.S3FileSystem, source: Path, final: S3Location) -> pafs.FileInfo:
    """One attempt: PUT (or multipart-upload) ``source`` to a staging key, check its size,
    copy it to ``final`` server-side (one atomic CopyObject), delete the staging key, HEAD
    ``final``."""
    import pyarrow as pa

    staging = staging_path(final, secrets.token_hex(8))
    try:
        # mapped first, written whole: nothing of ours runs between open and close (module doc)
        with pa.memory_map(str(source), "r") as mapped:
            data = mapped.read_buffer()
            size = int(data.size)
            out = fs.open_output_stream(staging)
            out.write(data)
            out.close()
        staged = fs.get_file_info(staging)
        if staged.size != size:
            raise ObjectStoreError(
                f"uploading to {final.url}: the staged copy holds {staged.size} bytes, not {size}",
                url=final.url,
                transient=True,
            )
        fs.copy_file(staging, final.path)
    finally:
        with contextlib.suppress(OSError):
            fs.delete_file(staging)
    info = fs.get_file_info(final.path)
    if info.size != size:
        raise ObjectStoreError(
            f"uploading to {final.url}: the store holds {info.size} bytes, not {size}",
            url=final.url,
        )
    return info


def upload(
    source: str | os.PathLike[str],
    dest: S3Location | str,
    *,
    fs: pafs.S3FileSystem | None = None,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
) -> ObjectInfo:
    """Put the local file ``source`` under the key ``dest``, whole or not at all; confirm it.

    The file goes to a staging key beside ``dest`` (:func:`staging_path`) and is then copied to
    ``dest`` by the store itself, so ``dest`` appears complete or not at all, whatever happens to
    the upload (module doc). Returns after a HEAD found ``dest`` with the local file's size: the
    caller may delete its copy then. Transient failures are retried after the delays of
    ``backoff`` (passed to ``sleep``). An interrupted attempt may leave a staging object (or an
    incomplete multipart upload) behind, never anything under ``dest``.

    Raises:
        ObjectStoreError: a permanent failure, or a transient one that outlasted ``backoff``.
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``dest`` is not an ``s3://bucket/key`` URL.
    """
    src = Path(source)
    loc = dest if isinstance(dest, S3Location) else parse_location(dest)
    if not isinstance(loc, S3Location) or not loc.prefix:
        raise ValueError(f"{str(dest)!r} is not an s3://bucket/key URL")
    size = src.stat().st_size
    fs = s3_filesystem() if fs is None else fs
    delays = backoff.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            _put_once(fs, src, loc)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not src.exists():
                raise
            err = _error("uploading to", loc.url, exc)
        except ObjectStoreError as exc:
            err = exc
        else:
            logger.debug("uploaded %s (%d bytes, %d attempts)", loc.url, size, attempt)
            return ObjectInfo(loc.path, size)
        delay = next(delays, None) if err.transient else None
        if delay is None:
            raise err from None
        logger.warning(
            "upload %s: attempt %d failed, retrying in %.1f s: %s", loc.url, attempt, delay, err
        )
        sleep(delay)


def remove_staging_leftovers(
    fs: pafs.S3FileSystem, root: S3Location, *, older_than_s: float, now: datetime
) -> list[str]:
    """Delete the staging objects (:func:`staging_path`) under ``root`` last modified more than
    ``older_than_s`` seconds before ``now`` (a timezone-aware time: pass the clock in); return
    their paths. Younger ones may belong to an upload in progress and are kept. Lists every key
    under ``root``: for ``recover`` and ``compact``, not for queries.

    Raises:
        ObjectStoreError: listing or deleting failed.
    """
    import pyarrow.fs as pafs

    cutoff = now - timedelta(seconds=older_than_s)
    removed: list[str] = []
    try:
        selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            name = info.base_name
            if info.type != pafs.FileType.File or not (
                name.startswith(".") and name.endswith(UPLOADING_SUFFIX)
            ):
                continue
            if info.mtime is not None and info.mtime > cutoff:
                continue
            fs.delete_file(info.path)
            removed.append(info.path)
    except OSError as exc:
        raise _error("removing staging leftovers under", root.url, exc) from None
    return sorted(removed)


# -- listing -----------------------------------------------------------------------------------


def _dirs(fs: pafs.S3FileSystem, path: str) -> list[pafs.FileInfo]:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    return list(fs.get_file_info(selector))


def list_parquet(
    fs: pafs.S3FileSystem,
    root: S3Location,
    event_types: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    *,
    max_enumerated_days: int = 62,
) -> list[ObjectInfo]:
    """The Parquet files of ``root`` for ``event_types`` (all) between ``start`` and ``end``.

    Walks one key level at a time with delimiter listings: ``root/`` for the event types (when
    none are given), ``<Type>/`` for the ``date=`` partitions (skipped when ``start`` and ``end``
    span at most ``max_enumerated_days`` days: those partitions are named directly), then each
    chosen ``date=YYYY-MM-DD/``. Bookkeeping folders (``_journal``, ``_sessions``...) are skipped.
    Sorted by key.

    Raises:
        ObjectStoreError: a listing failed.
    """
    import pyarrow.fs as pafs

    from .storage.layout import check_type_name

    try:
        if event_types is None:
            event_types = sorted(
                i.base_name
                for i in _dirs(fs, root.path)
                if i.type == pafs.FileType.Directory and not i.base_name.startswith("_")
            )
        found: list[ObjectInfo] = []
        for event_type in event_types:
            type_path = root.join(check_type_name(event_type)).path
            if start is not None and end is not None and (end - start).days < max_enumerated_days:
                days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
                parts = [f"{type_path}/date={d.isoformat()}" for d in days]
            else:
                parts = []
                for info in _dirs(fs, type_path):
                    name = info.base_name
                    if info.type != pafs.FileType.Directory or not name.startswith("date="):
                        continue
                    try:
                        day = date.fromisoformat(name.removeprefix("date="))
                    except ValueError:
                        continue
                    if (start is None or day >= start) and (end is None or day <= end):
                        parts.append(info.path)
            for part in parts:
                found.extend(
                    ObjectInfo(i.path, i.size)
                    for i in _dirs(fs, part)
                    if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                )
    except OSError as exc:
        raise _error("listing", root.url, exc) from None
    return sorted(found, key=lambda i: i.path)


def prefix_exists(root: S3Location, fs: pafs.S3FileSystem | None = None) -> bool:
    """Whether any key lies under ``root/`` (one LIST request asking for one key).

    Raises:
        ObjectStoreError: the listing failed (no such bucket, network, permissions).
    """
    fs = s3_filesystem() if fs is None else fs
    try:
        info = fs.get_file_info(root.path)
    except OSError as exc:
        raise _error("looking at", root.url, exc) from None
    import pyarrow.fs as pafs

    return bool(info.type == pafs.FileType.Directory)


# -- reading -----------------------------------------------------------------------------------


class _ThreadPositionedFile:
    """A read-only file over a pyarrow ``RandomAccessFile`` whose position is per thread.

    DuckDB's Python-filesystem bridge reads a range as two calls, ``seek(offset)`` then
    ``read(n)``, and its Parquet reader shares one handle between its threads: with one shared
    position another thread's ``seek`` lands between the two, and the read returns the wrong
    bytes or too few (measured on 10 M rows over moto: ``Failed to read 1486848 bytes ... only
    13419 bytes returned``, and a ``TProtocolException``). Each thread's seek and read come from
    the same thread, so a thread-local position makes every read the range asked for;
    ``read_at`` is positional and thread-safe in pyarrow.
    """

    def __init__(
        self,
        source: Any,
        path: str,
        *,
        size: int | None = None,
        opener: Callable[[], Any] | None = None,
        snapshot: _Snapshot | None = None,
    ) -> None:
        # with ``snapshot``, the source ``opener`` gives is the snapshot's, shared by every
        # handle on the object and released with the snapshot (not closed by :meth:`close`)
        import threading

        # ``source`` None: opened by ``opener`` at the first read the snapshot cannot serve
        # (an open costs a HEAD); ``size`` then comes from the snapshot's file info
        self._source = source
        self._opener = opener
        self._size = int(source.size()) if size is None else size
        self._local = threading.local()
        self._lock = threading.Lock()
        self._snapshot = snapshot
        self.path = path
        self.mode = "rb"
        self.closed = False

    def _opened(self) -> Any:
        with self._lock:
            if self._source is None:
                assert self._opener is not None
                self._source = self._opener()
            return self._source

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self._size}[whence]
        self._local.pos = base + offset
        return int(self._local.pos)

    def tell(self) -> int:
        return int(getattr(self._local, "pos", 0))

    def read(self, length: int = -1) -> bytes:
        pos = self.tell()
        n = self._size - pos if length is None or length < 0 else min(length, self._size - pos)
        if n <= 0:
            return b""
        snapshot = self._snapshot
        data = None if snapshot is None else snapshot.cached(self.path, pos, n)
        if data is None:
            try:
                data = bytes(self._opened().read_at(n, pos))  # a pyarrow Buffer or bytes
            except OSError as exc:  # e.g. deleted since it was opened
                raise _error("reading", f"s3://{self.path}", exc) from None
            if snapshot is not None and pos + len(data) == self._size:
                snapshot.keep_tail(self.path, pos, data)
        self._local.pos = pos + len(data)
        return data

    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._source is not None and self._snapshot is None:
                self._source.close()

    def __enter__(self) -> _ThreadPositionedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Snapshot:
    """What a snapshot of immutable objects lets a reader keep instead of asking again: each
    object's file info (size, last-modified: a HEAD), the object opened (a HEAD) and the tail of
    it read last (the Parquet footer), within :data:`SNAPSHOT_TAIL_BYTES` in all.

    DuckDB asks its filesystem for a file's existence, info, size and modification time, each
    a HEAD through fsspec, and opens the file (another HEAD) and reads its footer (a GET) at
    every bind of ``read_parquet`` -- 14 HEADs and 2 GETs per file and query on a view
    (``benchmarks/RESULTS.md``, "Opening many small files on S3"). Its own Parquet metadata
    cache does not help files modified less than 10 s before the read, which are exactly a live
    recording's newest. A recording's objects never change under their name (each is published
    once, complete, and compaction deletes, never rewrites), so within one snapshot (one
    :func:`tastyrec.connect` or ``refresh``) an object's info and footer are read once. A
    deleted object still fails its first data read (``ObjectStoreError``)."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._infos: dict[str, dict[str, Any]] = {}
        self._sources: dict[str, Any] = {}
        self._tails: dict[str, tuple[int, bytes]] = {}
        self._tail_bytes = 0

    def info(self, path: str, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        found = self._infos.get(path)
        if found is None:
            found = fetch()  # FileNotFoundError: not kept, asked again next time
            if found.get("type") == "file":
                self._infos[path] = found
        return found

    def source(self, path: str, opener: Callable[[], Any]) -> Any:
        """The object opened (a HEAD) once for the snapshot; pyarrow's ``read_at`` is
        thread-safe, so every handle DuckDB opens on it shares it."""
        found = self._sources.get(path)
        if found is None:
            opened = opener()
            with self._lock:
                found = self._sources.setdefault(path, opened)
            if found is not opened:
                opened.close()
        return found

    def cached(self, path: str, pos: int, n: int) -> bytes | None:
        tail = self._tails.get(path)
        if tail is None or pos < tail[0] or pos + n > tail[0] + len(tail[1]):
            return None
        start = pos - tail[0]
        return tail[1][start : start + n]

    def keep_tail(self, path: str, pos: int, data: bytes) -> None:
        with self._lock:
            old = self._tails.get(path)
            if old is not None and old[0] <= pos:
                return  # already holds at least this much of the tail
            grown = self._tail_bytes + len(data) - (0 if old is None else len(old[1]))
            if grown > SNAPSHOT_TAIL_BYTES:
                return
            self._tails[path] = (pos, data)
            self._tail_bytes = grown


#: Bytes of object tails (Parquet footers) one DuckDB snapshot of a recording keeps in memory;
#: past it, footers are read again at each query (DuckDB's own metadata cache still serves
#: objects older than 10 s when ``parquet_metadata_cache`` is on).
SNAPSHOT_TAIL_BYTES: Final = 64 * 1024 * 1024


def fsspec_filesystem(fs: pafs.S3FileSystem | None = None, *, snapshot: bool = False) -> Any:
    """fsspec's ``ArrowFSWrapper`` around ``fs`` (protocol ``s3``), whose files opened for
    reading keep one position per thread (:class:`_ThreadPositionedFile`: DuckDB's threads
    share a handle).

    With ``snapshot``, the objects are taken as immutable for the wrapper's life: each one's
    file info is asked once, its footer read once, and it is opened (a HEAD) only when a read
    needs the store (:class:`_Snapshot`). Listings (globs) still ask the store."""
    from fsspec.implementations.arrow import ArrowFSWrapper  # type: ignore[import-untyped]

    kept = _Snapshot() if snapshot else None

    class _Wrapper(ArrowFSWrapper):  # type: ignore[misc]
        def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
            if kept is None:
                return dict(super().info(path, **kwargs))
            return kept.info(self._strip_protocol(path), lambda: super(_Wrapper, self).info(
                path, **kwargs
            ))

        def modified(self, path: str) -> Any:
            if kept is None:
                return super().modified(path)
            return self.info(path)["mtime"]

        def _open(
            self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any
        ) -> Any:
            if mode != "rb" or not kwargs.get("seekable", True):
                return super()._open(path, mode, block_size, **kwargs)
            path = self._strip_protocol(path)

            def opener() -> Any:
                try:
                    return self.fs.open_input_file(path)
                except OSError as exc:
                    raise _error("opening", f"s3://{path}", exc) from None

            if kept is None:
                return _ThreadPositionedFile(opener(), path)
            size = int(self.info(path)["size"])
            return _ThreadPositionedFile(
                None, path, size=size, opener=lambda: kept.source(path, opener), snapshot=kept
            )

    return _Wrapper(s3_filesystem() if fs is None else fs, skip_instance_cache=True)


def register_duckdb(
    con: duckdb.DuckDBPyConnection,
    fs: pafs.S3FileSystem | None = None,
    *,
    snapshot: bool = False,
) -> None:
    """Let ``con`` read ``s3://`` URLs (``read_parquet('s3://b/p/Quote/*/*.parquet')``) with no
    extension download: through fsspec over pyarrow's S3 filesystem. Idempotent.

    ``snapshot``: register a new wrapper in place of any registered one, which takes the
    objects as immutable (:func:`fsspec_filesystem`), and switch DuckDB's Parquet metadata
    cache on: the views of :func:`tastyrec.connect` read each footer once, not at every
    query. Each ``snapshot`` registration starts with nothing kept."""
    if con.filesystem_is_registered("s3"):
        if not snapshot:
            return
        con.unregister_filesystem("s3")
    con.register_filesystem(fsspec_filesystem(fs, snapshot=snapshot))
    if snapshot:
        con.execute("SET parquet_metadata_cache = true")


_SHARED: dict[S3Config, pafs.S3FileSystem] = {}


def shared_filesystem() -> pafs.S3FileSystem:
    """One :func:`s3_filesystem` per configuration (:func:`s3_config` of the environment now)
    in this process, for readers opening many objects (replay opens each file twice)."""
    config = s3_config()
    fs = _SHARED.get(config)
    if fs is None:
        fs = _SHARED[config] = s3_filesystem(config)
    return fs


def open_parquet(url: str) -> Any:
    """A :class:`pyarrow.parquet.ParquetFile` over the object ``s3://bucket/key`` (ranged GETs
    through :func:`shared_filesystem`).

    Raises:
        ObjectStoreError: the object cannot be opened.
    """
    import pyarrow.parquet as pq

    try:
        source = shared_filesystem().open_input_file(url.removeprefix("s3://"))
    except OSError as exc:
        raise _error("opening", url, exc) from None
    return pq.ParquetFile(source)


def polars_storage_options(config: S3Config | None = None) -> dict[str, str]:
    """``storage_options`` for polars' own S3 reader (``pl.scan_parquet("s3://...")``): the
    endpoint and region of :func:`s3_config`, no credential.

    The keys come from :func:`polars_credential_provider` (boto3's standard chain: the
    ``AWS_*`` key variables, ``AWS_PROFILE`` with ``~/.aws/credentials`` and ``~/.aws/config``,
    session tokens), which tastyrec's readers pass with these options. Given alone, as in
    ``pl.scan_parquet(url, storage_options=polars_storage_options())``, polars picks the same
    provider by itself: every key here is one its automatic choice understands (``allow_http``,
    not ``aws_allow_http``: an option it does not know makes polars take it for a credential
    and leave the keys to its Rust reader, which reads the key variables only, never a
    profile)."""
    config = s3_config() if config is None else config
    options: dict[str, str] = {}
    if config.endpoint_override is not None:
        options["aws_endpoint_url"] = f"{config.scheme}://{config.endpoint_override}"
        if config.scheme == "http":
            options["allow_http"] = "true"
    if config.region is not None:
        options["aws_region"] = config.region
    return options


def polars_credential_provider(config: S3Config | None = None) -> pl.CredentialProviderAWS:
    """polars' AWS credential provider for :func:`polars_storage_options`' endpoint: boto3's
    standard chain, as :func:`s3_client` and the AWS CLI resolve it (key variables,
    ``AWS_PROFILE`` and the profile files, session tokens, SSO, roles). polars calls it when a
    query runs, in the process that runs it, and again when temporary credentials expire; the
    keys live in polars' cache, not in a tastyrec object, and the provider's repr shows none."""
    import polars as pl

    config = s3_config() if config is None else config
    return pl.CredentialProviderAWS(region_name=config.region)


def dataset(
    fs: pafs.S3FileSystem,
    root: S3Location,
    event_type: str,
    start: date | None = None,
    end: date | None = None,
) -> pads.Dataset:
    """A pyarrow dataset of one event type with the ``date`` hive partition (a string column).

    With ``start``/``end`` its files come from :func:`list_parquet`, which lists only those
    days' prefixes; without, pyarrow lists every key under ``<root>/<event_type>/``. Either way a
    filter on ``date`` (``pc.field("date") == "2026-12-01"``) reads that day's files only, and
    ``polars.scan_pyarrow_dataset`` takes the dataset as it is.

    Raises:
        ObjectStoreError: listing failed.
    """
    import pyarrow.dataset as pads

    from .storage.layout import check_type_name

    base = root.join(check_type_name(event_type)).path
    partitioning = pads.partitioning(flavor="hive")
    if start is None and end is None:
        return pads.dataset(base, filesystem=fs, format="parquet", partitioning=partitioning)
    files = [i.path for i in list_parquet(fs, root, [event_type], start, end)]
    return pads.dataset(
        files, filesystem=fs, format="parquet", partitioning=partitioning, partition_base_dir=base
    )
