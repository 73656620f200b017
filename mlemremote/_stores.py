"""Backend adapters: what fsspec does not expose uniformly.

Each store reads a file in one request *with* the token that a conditional write needs
(S3 ETag, GCS generation, Azure ETag, a content hash elsewhere), writes whole files
unconditionally, create-only or compare-and-swap, and lists object versions where the
backend keeps them. A reader never sees a partial file: local writes go to a temporary
file that is renamed into place; object stores replace an object in one PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity
from fsspec.asyn import sync

from mlemremote._redact import redact
from mlemremote._settings import current as current_settings
from mlemremote.core.errors import (
    MetafileTooLargeError,
    MlemError,
    ReadOnlyLocationError,
    RevisionNotSupportedError,
    StorageError,
)

if TYPE_CHECKING:
    from mlemremote._location import Location

logger = logging.getLogger("mlemremote")


class Expect(Enum):
    """What a write expects to find: anything, or nothing (create-only)."""

    ANY = "any"
    ABSENT = "absent"


# A write's expectation: Expect.ANY, Expect.ABSENT, or the token of the current content.
Expected = Expect | str


class WriteConflict(MlemError):
    """A conditional write found something other than what it expected."""


@dataclass(frozen=True)
class Blob:
    """A file's bytes as read in one request."""

    data: bytes
    token: str  # what a compare-and-swap write compares against
    version: str | None = None  # the backend's id of this version, where it keeps versions


@dataclass(frozen=True)
class Written:
    token: str | None
    version: str | None = None


@dataclass(frozen=True)
class Version:
    """One stored version of an object (newest first in `Store.versions`)."""

    version: str
    time: datetime
    deleted: bool = False


def content_token(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Store:
    """Any fsspec filesystem (memory, http, a git revision). Its tokens are a write
    counter kept by this process plus a content hash: writes to an in-process filesystem
    (memory) all pass through here, and compare-and-swap is exact under the lock."""

    kind = "fsspec"
    _lock = threading.Lock()
    # Keyed by filesystem class: fsspec makes one instance per thread, while the memory
    # filesystem's files are shared by all of them.
    _writes: dict[tuple[type, str], int] = {}  # noqa: RUF012

    def _token(self, loc: Location, data: bytes) -> str:
        count = self._writes.get((type(loc.fs), loc.fullpath), 0)
        return f"{count}:{content_token(data)}"

    def describe(self, loc: Location) -> str:
        return f"{loc.scheme}://"

    # -- reading -----------------------------------------------------------------------
    def read(self, loc: Location) -> Blob | None:
        """The file at `loc` (at `loc.rev` where versions are kept) in one request, or
        None if missing; transient faults are retried, files over the cap refused."""
        limit = current_settings().max_metafile_bytes
        blob = _fetch(loc, lambda: self._read_once(loc, limit))
        if blob is not None and len(blob.data) > limit:
            raise _too_large(loc, len(blob.data), limit)
        return blob

    # Stores whose reads are coroutines on their filesystem's event loop (`AsyncStore`):
    # a bulk call gathers many of them at once (`read_many`), not a thread per request.
    async_reads = False

    async def _get(self, loc: Location, limit: int) -> Blob:
        raise NotImplementedError

    def _read_once(self, loc: Location, limit: int) -> Blob | None:
        # A range read: no more than the cap (+1 byte, to see that it is over) is fetched.
        data = bytes(loc.fs.cat_file(loc.fullpath, start=0, end=limit + 1))
        with self._lock:
            return Blob(data, self._token(loc, data))

    # -- writing -----------------------------------------------------------------------
    def write(self, loc: Location, data: bytes, expect: Expected) -> Written:
        """Write the whole file; raise `WriteConflict` when `expect` does not hold.

        Transient faults are retried (here, and often inside the SDK too). A conditional
        write whose condition fails is checked once more: if the file now holds exactly
        our bytes, an earlier try landed and only its answer was lost, so this is a
        success, not a conflict. Callers make such bytes unique (link writes carry a
        write id), so that they cannot be someone else's.
        """
        if loc.read_only:
            raise ReadOnlyLocationError(f"cannot write {loc}: it is read-only")
        try:
            with _storage_errors(loc):
                return _retrying(loc, "write", lambda: self._write_once(loc, data, expect))
        except WriteConflict:
            current = self.read(loc)
            if current is not None and current.data == data:
                return Written(current.token, current.version)
            raise

    def _write_once(self, loc: Location, data: bytes, expect: Expected) -> Written:
        key = (type(loc.fs), loc.fullpath)
        with self._lock:
            if isinstance(expect, str):
                current = _fetch(loc, lambda: loc.fs.cat_file(loc.fullpath))
                if current is None or self._token(loc, bytes(current)) != expect:
                    raise WriteConflict(f"{loc} changed")
            try:
                mode = "create" if expect is Expect.ABSENT else "overwrite"
                loc.fs.pipe_file(loc.fullpath, data, mode=mode)
            except FileExistsError as exc:
                raise WriteConflict(f"{loc} exists") from exc
            self._writes[key] = self._writes.get(key, 0) + 1
            return Written(self._token(loc, data))

    # -- versions ----------------------------------------------------------------------
    def check_versions(self, loc: Location) -> None:
        """Raise `RevisionNotSupportedError` unless `rev=` can be honoured here."""
        raise RevisionNotSupportedError(
            f"{self.describe(loc)} keeps no versions, so rev= cannot be honoured for {loc}"
        )

    def versioned(self, loc: Location) -> bool:
        """True when the bucket keeps old versions of every object."""
        return False

    def versions(self, loc: Location) -> list[Version]:
        self.check_versions(loc)
        return []

    def keeps_versions(self, loc: Location, written_version: str | None) -> bool:
        """After a write that returned `written_version`: does the bucket keep it?"""
        return False


class LocalStore(Store):
    """Local disk: atomic rename; compare-and-swap under a lock on the folder."""

    kind = "local disk"

    def describe(self, loc: Location) -> str:
        return "local disk (outside git)"

    def _read_once(self, loc: Location, limit: int) -> Blob | None:
        with open(loc.fullpath, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size > limit:
                raise _too_large(loc, stat.st_size, limit)
            data = handle.read(limit + 1)
        return Blob(data, _file_token(stat, data))

    def _write_once(self, loc: Location, data: bytes, expect: Expected) -> Written:
        path = loc.fullpath
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        if expect is Expect.ANY:
            token = _atomic_write(path, data, replace=True)
        elif expect is Expect.ABSENT:
            token = _atomic_write(path, data, replace=False)
            if token is None:
                raise WriteConflict(f"{loc} exists")
        else:
            with _folder_lock(folder):
                current = self.read(loc)
                if current is None or current.token != expect:
                    raise WriteConflict(f"{loc} changed")
                token = _atomic_write(path, data, replace=True)
        return Written(token)


class AsyncStore(Store):
    """A store whose filesystem is async (s3fs, gcsfs, adlfs): a read is one coroutine,
    `_get`, run on the filesystem's event loop (alone, or gathered by `read_many`)."""

    async_reads = True

    def _read_once(self, loc: Location, limit: int) -> Blob | None:
        return sync(loc.fs.loop, self._get, loc, limit)  # type: ignore[no-any-return]


class S3Store(AsyncStore):
    """S3 (AWS, MinIO, moto, SeaweedFS): If-Match / If-None-Match, VersionId."""

    kind = "S3"

    def describe(self, loc: Location) -> str:
        return "S3"

    async def _get(self, loc: Location, limit: int) -> Blob:
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        extra = {"VersionId": loc.rev} if loc.rev else {}
        resp = await loc.fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
        try:
            if resp.get("ContentLength", 0) > limit:
                raise _too_large(loc, resp["ContentLength"], limit)
            data = await resp["Body"].read()
        finally:
            resp["Body"].close()
        version = resp.get("VersionId")
        version = None if version in (None, "null") else version
        return Blob(bytes(data), str(resp["ETag"]), version)

    def _write_once(self, loc: Location, data: bytes, expect: Expected) -> Written:
        try:
            if expect is Expect.ANY:
                resp = loc.fs.pipe_file(loc.fullpath, data)
            elif expect is Expect.ABSENT:
                resp = loc.fs.pipe_file(loc.fullpath, data, mode="create")
            else:
                # Conditions go on this PUT only (never s3_additional_kwargs, which
                # would send them on every GET too).
                resp = loc.fs.pipe_file(loc.fullpath, data, IfMatch=expect)
        except (FileExistsError, FileNotFoundError) as exc:
            if expect is Expect.ANY:
                raise
            raise WriteConflict(f"{loc} changed") from exc
        except OSError as exc:
            if expect is not Expect.ANY and _precondition_failed(exc):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        version = resp.get("VersionId") if isinstance(resp, dict) else None
        token = resp.get("ETag") if isinstance(resp, dict) else None
        return Written(token, None if version in (None, "null") else version)

    def check_versions(self, loc: Location) -> None:
        return None  # a bucket without versioning answers "no such version"

    def keeps_versions(self, loc: Location, written_version: str | None) -> bool:
        return written_version is not None  # S3 answers a PUT with its VersionId

    def versioned(self, loc: Location) -> bool:
        bucket = loc.fs.split_path(loc.fullpath)[0]
        with _storage_errors(loc, "list versions of"):
            status = loc.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status")
        return bool(status == "Enabled")

    def versions(self, loc: Location) -> list[Version]:
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        found: list[Version] = []
        marker: dict[str, str] = {}
        with _storage_errors(loc, "list versions of"):
            while True:
                page = loc.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=key, **marker)
                for item in page.get("Versions", []):
                    if item["Key"] == key:
                        found.append(Version(item["VersionId"], item["LastModified"]))
                for item in page.get("DeleteMarkers", []):
                    if item["Key"] == key:
                        found.append(Version(item["VersionId"], item["LastModified"], True))
                if not page.get("IsTruncated"):
                    break
                marker = {
                    "KeyMarker": page["NextKeyMarker"],
                    "VersionIdMarker": page["NextVersionIdMarker"],
                }
        return sorted(found, key=lambda v: v.time, reverse=True)


class GCSStore(AsyncStore):
    """GCS: ifGenerationMatch, generations as versions."""

    kind = "GCS"
    # Whether a bucket keeps old generations: asked once per bucket and process, since it
    # decides on every link write whether history needs its own log.
    _versioning: dict[tuple[int, str], bool] = {}  # noqa: RUF012

    def describe(self, loc: Location) -> str:
        return "GCS"

    async def _get(self, loc: Location, limit: int) -> Blob:
        _quiet_gcsfs_416()
        fs = loc.fs
        url = fs.url(loc.fullpath, generation=loc.rev)
        try:
            headers, data = await fs._call("GET", url, headers={"Range": f"bytes=0-{limit}"})
        except Exception as exc:
            if getattr(exc, "code", None) != 416:
                raise
            # An empty object has no byte 0: read it whole (it is empty).
            headers, data = await fs._call("GET", url)
        total = str(headers.get("Content-Range", "")).rpartition("/")[2]
        if total.isdigit() and int(total) > limit:
            raise _too_large(loc, int(total), limit)
        generation = str(headers.get("X-Goog-Generation", ""))
        return Blob(bytes(data), generation, generation or None)

    def _write_once(self, loc: Location, data: bytes, expect: Expected) -> Written:
        fs = loc.fs
        try:
            if expect is Expect.ANY:
                out = fs.pipe_file(loc.fullpath, data)
            elif expect is Expect.ABSENT:
                out = fs.pipe_file(loc.fullpath, data, mode="create")
            else:
                out = self._upload_if_generation(loc, data, expect)
        except FileExistsError as exc:  # gcsfs: 412 Precondition Failed
            if expect is Expect.ANY:
                raise
            raise WriteConflict(f"{loc} changed") from exc
        generation = str(out["generation"]) if isinstance(out, dict) else None
        return Written(generation, generation)

    @staticmethod
    def _upload_if_generation(loc: Location, data: bytes, generation: str) -> Any:
        # gcsfs has no compare-and-swap write: a multipart upload with ifGenerationMatch
        # is one request, and the server applies the condition atomically.
        fs = loc.fs
        bucket, key, _ = fs.split_path(loc.fullpath)
        boundary = "mlemremote-boundary"
        meta = '{"name": ' + _json_string(key) + "}"
        body = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--".encode()
        )
        return fs.call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{bucket}/o",
            uploadType="multipart",
            ifGenerationMatch=generation,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=body,
            json_out=True,
        )

    def check_versions(self, loc: Location) -> None:
        return None  # an unknown generation reads as missing

    def keeps_versions(self, loc: Location, written_version: str | None) -> bool:
        return self.versioned(loc)

    def versioned(self, loc: Location) -> bool:
        bucket = loc.fs.split_path(loc.fullpath)[0]
        key = (id(loc.fs), bucket)
        if key not in self._versioning:
            with _storage_errors(loc, "list versions of"):
                meta = loc.fs.call("GET", "b/{}", bucket, json_out=True)
            self._versioning[key] = bool(meta.get("versioning", {}).get("enabled"))
        return self._versioning[key]

    def versions(self, loc: Location) -> list[Version]:
        fs = loc.fs
        bucket, key, _ = fs.split_path(loc.fullpath)
        found: list[Version] = []
        page_token: dict[str, str] = {}
        with _storage_errors(loc, "list versions of"):
            while True:
                page = fs.call(
                    "GET", "b/{}/o", bucket, prefix=key, versions="true", json_out=True,
                    **page_token,
                )  # fmt: skip
                for item in page.get("items", []):
                    if item["name"] == key:
                        created = _parse_time(item["timeCreated"])
                        found.append(Version(str(item["generation"]), created))
                if "nextPageToken" not in page:
                    break
                page_token = {"pageToken": page["nextPageToken"]}
        return sorted(found, key=lambda v: v.time, reverse=True)


class _Drop416(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "non-retriable exception: , 416" not in record.getMessage()


def _quiet_gcsfs_416() -> None:
    """gcsfs logs every 416 with a traceback at ERROR level; a range read of an empty
    object (MLEM's `.mlem/config.yaml` is empty) answers 416 by design, so that one
    message is dropped."""
    gcsfs_logger = logging.getLogger("gcsfs")
    if not any(isinstance(f, _Drop416) for f in gcsfs_logger.filters):
        gcsfs_logger.addFilter(_Drop416())


class AzureStore(AsyncStore):
    """Azure Blob: ETag match conditions. Versions are refused: Azurite, the only server
    this is tested on, ignores version ids and would silently serve the current blob."""

    kind = "Azure Blob"

    def describe(self, loc: Location) -> str:
        return "Azure Blob (blob versions are not supported yet)"

    async def _get(self, loc: Location, limit: int) -> Blob:
        container, blob, _ = loc.fs.split_path(loc.fullpath)
        async with loc.fs.service_client.get_blob_client(container=container, blob=blob) as bc:
            # retry_total=0: our retry policy is the one that counts.
            stream = await bc.download_blob(retry_total=0)
            if stream.size > limit:
                raise _too_large(loc, stream.size, limit)
            return Blob(bytes(await stream.readall()), str(stream.properties.etag))

    def _write_once(self, loc: Location, data: bytes, expect: Expected) -> Written:
        from azure.core import MatchConditions

        conditions: dict[str, Any] = {"retry_total": 0}
        if isinstance(expect, str):
            conditions.update(etag=expect, match_condition=MatchConditions.IfNotModified)
        try:
            if expect is Expect.ABSENT:
                out = loc.fs.pipe_file(loc.fullpath, data, mode="create", **conditions)
            else:
                out = loc.fs.pipe_file(loc.fullpath, data, **conditions)
        except FileExistsError as exc:
            raise WriteConflict(f"{loc} exists") from exc
        except Exception as exc:
            if isinstance(expect, str) and type(exc).__name__ in (
                "ResourceModifiedError",
                "ResourceNotFoundError",
            ):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        return Written(str(out["etag"]) if isinstance(out, dict) else None)


def store_for(loc: Location) -> Store:
    """The adapter for the filesystem of `loc`."""
    if loc.git_root is not None:
        return _GENERIC
    protocols = loc.fs.protocol if isinstance(loc.fs.protocol, tuple) else (loc.fs.protocol,)
    for protocol in protocols:
        if protocol in _BY_PROTOCOL:
            return _BY_PROTOCOL[protocol]
    return _GENERIC


_GENERIC = Store()
_BY_PROTOCOL: dict[str, Store] = {
    "file": LocalStore(),
    "local": LocalStore(),
    "s3": S3Store(),
    "gs": GCSStore(),
    "abfs": AzureStore(),
}


def read_bytes(loc: Location) -> bytes | None:
    """The content of the file at `loc` in one GET, or None when there is none."""
    blob = store_for(loc).read(loc)
    return None if blob is None else blob.data


Answer = Blob | None | MlemError


def read_many(locs: Sequence[Location], concurrency: int) -> dict[int, Answer]:
    """Read many files at once: those on stores with coroutine reads are gathered on their
    event loop, at most `concurrency` requests in flight, one request each.

    The answer by index for each file whose outcome is final: its blob, None when it is
    missing, or a `MlemError` (over the cap, or a `StorageError` for a permanent error).
    Files on other stores, and files that met a transient fault, are left out:
    `Store.read` reads those one by one, with retries.
    """
    limit = current_settings().max_metafile_bytes
    by_loop: dict[int, list[int]] = {}
    for index, loc in enumerate(locs):
        if store_for(loc).async_reads:
            by_loop.setdefault(id(loc.fs.loop), []).append(index)
    answers: dict[int, Answer] = {}
    for indexes in by_loop.values():
        batch = [locs[i] for i in indexes]
        outcomes = sync(batch[0].fs.loop, _gather_reads, batch, limit, concurrency)
        for index, loc, outcome in zip(indexes, batch, outcomes, strict=True):
            if isinstance(outcome, Blob) and len(outcome.data) > limit:
                answers[index] = _too_large(loc, len(outcome.data), limit)
            elif isinstance(outcome, (Blob, MlemError)):
                answers[index] = outcome
            elif _missing(loc, outcome):
                answers[index] = None
            elif not is_transient(outcome):  # as `read` would: permanent, not retried
                answers[index] = _storage_error(loc, "read", outcome)
    return answers


async def _gather_reads(
    locs: list[Location], limit: int, concurrency: int
) -> list[Blob | BaseException]:
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(loc: Location) -> Blob:
        async with slots:
            return await store_for(loc)._get(loc, limit)

    return await asyncio.gather(*(one(loc) for loc in locs), return_exceptions=True)


# -- helpers ---------------------------------------------------------------------------
T = TypeVar("T")


def _fetch(loc: Location, get: Callable[[], T]) -> T | None:
    """Run one read, retrying transient faults; None when the file (or, with `loc.rev`,
    that version) is missing."""
    try:
        return _retrying(loc, "read", get)
    except MlemError:
        raise
    except Exception as exc:
        if _missing(loc, exc):
            return None
        raise _storage_error(loc, "read", exc) from None


def _missing(loc: Location, exc: BaseException) -> bool:
    """Does this read error mean "no such file" (or, with `loc.rev`, no such version)?"""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return True
    if getattr(exc, "errno", None) in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
        return True
    if _status_of(exc) == 404 or type(exc).__name__ == "ResourceNotFoundError":
        return True
    return loc.rev is not None and _bad_version(exc)


@contextlib.contextmanager
def _storage_errors(loc: Location, verb: str = "write") -> Iterator[None]:
    """Backend exceptions from writes and listings, as `StorageError` naming the URI."""
    try:
        yield
    except MlemError:
        raise
    except Exception as exc:
        raise _storage_error(loc, verb, exc) from None


def _storage_error(loc: Location, verb: str, exc: BaseException) -> StorageError:
    # Raised `from None` with the backend's exception kept as `.original`: tracebacks
    # then show only our (redacted) message, never a URL with a signature in it.
    kind = "transient fault, retries exhausted" if is_transient(exc) else type(exc).__name__
    error = StorageError(f"cannot {verb} {loc} ({kind}): {exc}")
    error.original = exc
    return error


def _retrying(loc: Location, what: str, call: Callable[[], T]) -> T:
    """`call()`, retried on transient faults with exponential backoff and full jitter,
    bounded by attempts and by total time (see `configure`)."""
    settings = current_settings()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.retry_attempts)
        | tenacity.stop_after_delay(settings.retry_max_seconds),
        wait=tenacity.wait_random_exponential(
            multiplier=settings.retry_initial_wait, max=settings.retry_max_wait
        ),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=lambda state: logger.debug(
            redact(
                f"retrying {what} of {loc} (attempt {state.attempt_number} failed: "
                f"{state.outcome.exception() if state.outcome else ''!r})"
            )
        ),
        reraise=True,
    )
    return retrying(call)


_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_PERMANENT_STATUS = {400, 401, 403, 404, 409, 412, 416}
_TRANSIENT_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "ServerBusy",
    "OperationTimedOut",
    "InternalServerError",
}
_TRANSIENT_TYPES = {
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "IncompleteRead",
    "ServiceRequestError",
    "ServiceResponseError",
    "ServerDisconnectedError",
    "ClientPayloadError",
    "ClientConnectionError",
    "ClientConnectorError",
    "ClientOSError",
    "ContentLengthError",
    "TransferEncodingError",
    "ProxyError",
}


def is_transient(exc: BaseException) -> bool:
    """Connection resets and timeouts, 429/500/502/503/504, SlowDown, ServerBusy: yes.
    400/401/403/404/409/412 and everything of ours: no."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MlemError):
            return False
        status = _status_of(current)
        if status in _PERMANENT_STATUS:
            return False
        if status in _TRANSIENT_STATUS or _code_of(current) in _TRANSIENT_CODES:
            return True
        if isinstance(current, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if type(current).__name__ in _TRANSIENT_TYPES:
            return True
        current = current.__cause__ or current.__context__
    return False


def _status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


def _code_of(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    code = getattr(exc, "error_code", None)  # azure-core
    return str(code) if code is not None else None


def _too_large(loc: Location, size: int, limit: int) -> MetafileTooLargeError:
    return MetafileTooLargeError(
        f"{loc} is {size} bytes, over the {limit}-byte cap for metafiles; it was not read"
    )


def _bad_version(exc: BaseException) -> bool:
    text = f"{exc} {exc.__cause__}"
    return any(code in text for code in ("NoSuchVersion", "InvalidArgument", "Invalid version"))


def _precondition_failed(exc: BaseException) -> bool:
    """SeaweedFS answers a failed condition as OSError(EINVAL) with the S3 error below."""
    cause: BaseException | None = exc
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "ConditionalRequestConflict",
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _file_token(stat: os.stat_result, data: bytes) -> str:
    # Every write renames a new file into place, so inode and mtime change with each
    # write, even when the content does not (no ABA for compare-and-swap).
    return f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{content_token(data)[7:23]}"


def _atomic_write(path: str, data: bytes, *, replace: bool) -> str | None:
    """Write a temporary file beside `path`, then rename it into place (or, without
    `replace`, link it there: None when `path` exists). Returns the new file's token."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + posixpath.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o644)
            token = _file_token(os.fstat(handle.fileno()), data)
        if replace:
            os.replace(tmp, path)
            return token
        try:
            os.link(tmp, path)  # atomic, and fails when `path` exists
        except FileExistsError:
            return None
        return token
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """An exclusive lock on the folder itself (no lock file left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _json_string(text: str) -> str:
    import json

    return json.dumps(text)


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
