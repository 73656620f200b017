"""The one place where exceptions that are not ours are classified and mapped.

Backends, SDKs and the standard library raise their own exceptions (`OSError`,
botocore's `ClientError`, aiohttp's, azure-core's, google-auth's, pydantic's,
`ValueError` from a malformed connection string, ...). Everything here answers two
questions about such an exception: is it worth retrying (`is_transient`), does it mean
"no such file" (`is_missing`); and turns it into a `MlemError` (`storage_error` for a
failed request, `to_mlem_error` for anything else). The public API's boundary
(`_boundary.public`) calls `to_mlem_error` and `detach`, so that nothing but a
`MlemError` leaves a public call, and no foreign exception (whose text may hold a URL
with a signature, or a line of a file) hangs in its cause chain.

>>> isinstance(to_mlem_error(ValueError("bad")), MlemError)
True
"""

from __future__ import annotations

import asyncio
import errno
from typing import Protocol

from mlemremote.core.errors import (
    BucketNotFoundError,
    MlemError,
    StorageError,
    UnexpectedError,
)

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_PERMANENT_STATUS = {400, 401, 403, 404, 405, 409, 412, 416}
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
_MISSING_BUCKET_CODES = {"NoSuchBucket", "ContainerNotFound", "ContainerBeingDeleted"}


class Named(Protocol):
    """What an error message needs of a location: its text (a URI, maybe @rev)."""

    def __str__(self) -> str: ...


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_transient(exc: BaseException) -> bool:
    """Connection resets and timeouts, 429/500/502/503/504, SlowDown, ServerBusy: yes.
    400/401/403/404/409/412 and everything of ours: no."""
    for current in _chain(exc):
        if isinstance(current, MlemError):
            return False
        status = status_of(current)
        if status in _PERMANENT_STATUS:
            return False
        if status in _TRANSIENT_STATUS or code_of(current) in _TRANSIENT_CODES:
            return True
        if isinstance(current, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if type(current).__name__ in _TRANSIENT_TYPES:
            return True
    return False


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (every SDK spells it differently)."""
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


def code_of(exc: BaseException) -> str | None:
    """The service's error code (S3 `NoSuchKey`, Azure `ContainerNotFound`, ...)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    code = getattr(exc, "error_code", None)  # azure-core
    return str(code) if code is not None else None


def codes_in(exc: BaseException) -> set[str]:
    """Every service error code along the exception's chain."""
    return {code for current in _chain(exc) if (code := code_of(current)) is not None}


def is_missing(exc: BaseException, *, versioned: bool = False) -> bool:
    """Does this read error mean "no such file" (or, `versioned`, no such version)?
    A missing bucket or container is not a missing file: it is reported as such."""
    if missing_bucket(exc):
        return False
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return True
    if getattr(exc, "errno", None) in (errno.ENOENT, errno.ENOTDIR):
        return True
    if status_of(exc) == 404 or type(exc).__name__ == "ResourceNotFoundError":
        return True
    return versioned and bad_version(exc)


def missing_bucket(exc: BaseException) -> bool:
    if codes_in(exc) & _MISSING_BUCKET_CODES:
        return True
    return any("The specified bucket does not exist" in str(c) for c in _chain(exc))


def bad_version(exc: BaseException) -> bool:
    text = f"{exc} {exc.__cause__}"
    return any(code in text for code in ("NoSuchVersion", "InvalidArgument", "Invalid version"))


def precondition_failed(exc: BaseException) -> bool:
    """A failed write condition, however the server spelled it (SeaweedFS answers one as
    OSError(EINVAL) with the S3 error below it)."""
    if codes_in(exc) & {"PreconditionFailed", "ConditionalRequestConflict", "ConditionNotMet"}:
        return True
    return any(status_of(c) == 412 for c in _chain(exc))


def not_modified(exc: BaseException) -> bool:
    """Is this the answer 304 Not Modified to a conditional read (S3 and Azure
    If-None-Match, GCS ifGenerationNotMatch), however the SDK raised it?"""
    return any(status_of(c) == 304 for c in _chain(exc))


def answered_etag(exc: BaseException) -> str | None:
    """The ETag a 304 answer carried (botocore keeps the headers in its error's
    `response`, azure-core in its `response.headers`), or None when it named none."""
    for current in _chain(exc):
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        else:
            headers = getattr(response, "headers", None)
        if headers is None:
            continue
        try:
            etag = headers.get("etag") or headers.get("ETag")
        except Exception:  # a headers object of an unknown shape: no ETag known
            continue
        if isinstance(etag, str) and etag:
            return etag
    return None


def storage_error(where: Named, verb: str, exc: BaseException) -> StorageError:
    """A failed request as a `StorageError` naming the location (its text redacted).

    The backend's exception is kept as `.original` and left out of the cause chain:
    a traceback then shows only our redacted message, never a URL with a signature.
    """
    if missing_bucket(exc):
        text = str(where)
        name = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else ""
        error: StorageError = BucketNotFoundError(
            f"cannot {verb} {where}: the bucket or container {name!r} does not exist"
        )
    else:
        kind = "transient fault, retries exhausted" if is_transient(exc) else type(exc).__name__
        error = StorageError(f"cannot {verb} {where} ({kind}): {_text(exc)}")
    error.original = exc
    return error


def _text(exc: BaseException) -> str:
    """An exception's message on one line, shortened: SDKs put whole XML bodies and
    tracebacks in theirs."""
    raw = str(exc)
    for marker in ("\nContent:", "<?xml"):  # azure-core appends the whole XML error body
        if (cut := raw.find(marker)) > 0:
            raw = raw[:cut]
    kept = [ln for ln in raw.splitlines() if not ln.startswith(("RequestId:", "Time:"))]
    text = " ".join(" ".join(kept).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def to_mlem_error(exc: BaseException, what: str = "") -> MlemError:
    """Any exception as a `MlemError`: ours as they are, request failures as
    `StorageError`, anything else as `UnexpectedError` naming its type."""
    if isinstance(exc, MlemError):
        return exc
    where = f" in {what}" if what else ""
    if isinstance(exc, (OSError, asyncio.TimeoutError)) or status_of(exc) or code_of(exc):
        return storage_error(what or "storage", "use", exc)
    error = UnexpectedError(f"unexpected {type(exc).__name__}{where}: {_text(exc)}")
    error.original = exc
    return error


def detach(error: MlemError) -> MlemError:
    """Cut every foreign exception out of `error`'s cause chain and context (our own
    errors stay: their messages are redacted); the first one cut is kept as `.original`."""
    current: BaseException = error
    seen: list[BaseException] = []
    while all(current is not s for s in seen):
        seen.append(current)
        for foreign in (current.__cause__, current.__context__):
            if error.original is None and foreign is not None:
                error.original = None if isinstance(foreign, MlemError) else foreign
        if current.__cause__ is not None and not isinstance(current.__cause__, MlemError):
            current.__cause__ = None
            current.__suppress_context__ = True
        if current.__context__ is not None and not isinstance(current.__context__, MlemError):
            current.__context__ = None
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return error
