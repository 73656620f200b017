"""What every store shares: the read/write contract, retries and the call's time budget.

A store reads a file in one request *with* the token that a conditional write needs,
and writes whole files unconditionally, create-only or compare-and-swap. Transient faults
are retried (tenacity) inside the call's time budget (`call_budget`); the size cap is
checked while the bytes stream in, never after.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import tenacity
from fsspec.asyn import sync
from fsspec.exceptions import FSTimeoutError

from mlemremote._foreign import is_missing, is_transient, storage_error
from mlemremote._redact import redact
from mlemremote._settings import current as current_settings
from mlemremote.core.errors import (
    ArtifactIntegrityError,
    MetafileTooLargeError,
    MlemError,
    ReadOnlyLocationError,
    RevisionNotSupportedError,
    TimeBudgetError,
    UnsupportedLocationError,
)

if TYPE_CHECKING:
    from fsspec.spec import AbstractFileSystem

logger = logging.getLogger("mlemremote")
T = TypeVar("T")
P = ParamSpec("P")


class Where(Protocol):
    """What a store needs of a location (`mlemremote._location.Location` is one)."""

    fs: AbstractFileSystem
    fullpath: str
    scheme: str
    rev: str | None
    git_root: str | None

    @property
    def read_only(self) -> bool: ...

    def __str__(self) -> str: ...


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
    modified: datetime | None = None  # when it was written, where the backend says
    # What `Store.read_if_changed` can check without reading the file again (local disk:
    # its status), or None: then the backend's own validator (`token`) or the bytes are.
    stamp: str | None = None


class Unchanged(Enum):
    """`Store.read_if_changed`'s answer when the file still holds what was read."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED
# What a conditional read finds: new bytes, nothing (the file is gone), or no change.
Polled = Blob | None | Unchanged


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
    token: str | None = None  # its token (S3 ETag), where the listing says


class Body(Protocol):
    """A file being read: its chunks in order, as they arrive (see `Store.open_body`)."""

    @property
    def size(self) -> int | None:
        """The whole file's size, as the backend told it (None: not told)."""
        ...

    @property
    def token(self) -> str | None:
        """What identifies this content, so that a resumed read stays on it."""
        ...

    @property
    def start(self) -> int:
        """Where in the file the body starts (the server may ignore a Range)."""
        ...

    def read(self, most: int) -> bytes:
        """The next chunk (at most `most` bytes; b"" at the end)."""
        ...

    def close(self) -> None: ...


def changed(loc: Where) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(f"{loc} changed while it was being read")


class BytesBody:
    """A body that is already in memory (the memory filesystem, a git blob)."""

    def __init__(
        self, data: bytes | memoryview, size: int, token: str | None, start: int = 0
    ) -> None:
        self._view = memoryview(data)
        self.size, self.token, self.start = size, token, start

    def read(self, most: int) -> bytes:
        chunk, self._view = self._view[:most], self._view[most:]
        return bytes(chunk)

    def close(self) -> None:
        self._view = memoryview(b"")


def content_token(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Store:
    """A backend: reads with tokens, conditional writes, versions where kept.

    This base class reads with one range request through fsspec and cannot write; each
    backend that can write conditionally has its own subclass.
    """

    kind = "fsspec"
    # Stores whose reads are coroutines on their filesystem's event loop (`AsyncStore`):
    # a bulk call gathers many of them at once (`read_many`), not a thread per request.
    async_reads = False

    def describe(self, loc: Where) -> str:
        return f"{loc.scheme}://"

    # -- reading -----------------------------------------------------------------------
    def read(self, loc: Where) -> Blob | None:
        """The file at `loc` (at `loc.rev` where versions are kept) in one request, or
        None if missing; transient faults are retried, files over the cap refused."""
        limit = current_settings().max_metafile_bytes
        blob = fetch(loc, lambda: self._read_once(loc, limit))
        if blob is not None and len(blob.data) > limit:
            raise too_large(loc, limit)
        return blob

    async def _get(self, loc: Where, limit: int) -> Blob:
        raise NotImplementedError

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        # A range read: no more than the cap (+1 byte, to see that it is over) is fetched.
        data = bytes(loc.fs.cat_file(loc.fullpath, start=0, end=limit + 1))
        return Blob(data, content_token(data))

    def read_if_changed(self, loc: Where, last: Blob | None) -> Polled:
        """`UNCHANGED` while the file at `loc` is still the one `last` was read from
        (None: it was missing, and still is, answers None); otherwise what `read` gives.

        Where the backend can tell without sending the body, that costs one conditional
        request and no body bytes: S3 and Azure `If-None-Match` (304), GCS
        `ifGenerationNotMatch` (304), a `stat` on local disk, the bytes in this process for
        memory.
        Elsewhere (and from a server that ignores the condition) it is a read: the answer
        is then the file's bytes, which may equal `last`'s (the caller compares them), so
        that a server that ignores the condition costs bytes, never a missed change.
        Transient faults are retried and the size cap holds, as in `read`.
        """
        limit = current_settings().max_metafile_bytes
        answer = fetch(loc, lambda: self._read_if_changed_once(loc, limit, last))
        if isinstance(answer, Blob) and len(answer.data) > limit:
            raise too_large(loc, limit)
        return answer

    def _read_if_changed_once(self, loc: Where, limit: int, last: Blob | None) -> Polled:
        return self._read_once(loc, limit)

    # -- writing -----------------------------------------------------------------------
    def write(self, loc: Where, data: bytes, expect: Expected) -> Written:
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
            return retrying(loc, "write", lambda: self._write_once(loc, data, expect))
        except WriteConflict:
            current = self.read(loc)
            if current is not None and current.data == data:
                return Written(current.token, current.version)
            raise
        except MlemError:
            raise
        except Exception as exc:
            raise storage_error(loc, "write", exc) from None

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        raise ReadOnlyLocationError(
            f"cannot write {loc}: {self.describe(loc)} has no atomic conditional writes"
        )

    # -- deleting ----------------------------------------------------------------------
    def delete(self, loc: Where, expect: str) -> Written:
        """Delete the file if its token is still `expect`; `WriteConflict` when it is
        not (or the file is gone). Returns the version the backend made of the deletion
        (an S3 delete marker's VersionId), if any.

        Callers read the file with its token just before, so where a backend cannot
        make the deletion itself conditional, what is left is the instant between that
        read and this request (each store says where). A try whose answer was lost is
        recognised: if a retried deletion finds the file gone, it is a success.
        """
        if loc.read_only:
            raise ReadOnlyLocationError(f"cannot delete {loc}: it is read-only")
        tries = 0

        def once() -> Written:
            nonlocal tries
            tries += 1
            return self._delete_once(loc, expect)

        try:
            return retrying(loc, "delete", once)
        except WriteConflict:
            if tries > 1 and self.read(loc) is None:
                return Written(None)
            raise
        except MlemError:
            raise
        except Exception as exc:
            raise storage_error(loc, "delete", exc) from None

    def _delete_once(self, loc: Where, expect: str) -> Written:
        raise ReadOnlyLocationError(
            f"cannot delete {loc}: {self.describe(loc)} has no conditional deletes"
        )

    # -- versions ----------------------------------------------------------------------
    def check_versions(self, loc: Where) -> None:
        """Raise `RevisionNotSupportedError` unless `rev=` can be honoured here."""
        raise RevisionNotSupportedError(
            f"{self.describe(loc)} keeps no versions, so a revision (rev) cannot be "
            f"honoured for {loc}"
        )

    def versioned(self, loc: Where) -> bool:
        """True when the bucket keeps old versions of every object."""
        return False

    def versions(self, loc: Where) -> list[Version]:
        """Every version of the object, newest first (the current one first)."""
        self.check_versions(loc)
        return []

    def keeps_versions(self, loc: Where, written_version: str | None) -> bool:
        """After a write that returned `written_version`: does the bucket keep it?"""
        return False

    def entries(self, loc: Where) -> list[str]:
        """The names directly in the folder `loc` (full paths), or [] when there is none."""
        try:
            loc.fs.invalidate_cache(loc.fullpath)
            return [str(p) for p in loc.fs.ls(loc.fullpath, detail=False)]
        except Exception as exc:
            if is_missing(exc) or isinstance(exc, NotADirectoryError):
                return []
            raise storage_error(loc, "list", exc) from None

    # -- streaming a whole file (artifacts) ----------------------------------------------
    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        """The file at `loc` as a stream of chunks from byte `offset`: one request on
        object stores, whose body is read as it is consumed (never all at once).

        `token`: what an earlier open of the same file gave (`Body.token`); a resumed
        read of a file that changed since raises `ArtifactIntegrityError`. `within`
        (local disk): the folder the file must be in once symlinks are resolved,
        checked on the descriptor that is read. A missing file raises
        `FileNotFoundError`; anything but a regular file, `NotAFileError`; a backend's
        other faults are raised as the backend raises them (for the caller to classify).
        """
        raise UnsupportedLocationError(f"cannot stream {loc}: {self.describe(loc)}")

    def version_with(self, loc: Where, size: int, md5: str) -> str | None:
        """The id of a stored version of `loc` with this size and MD5, where the
        backend keeps versions and says their MD5 (None: none found, or not known)."""
        return None

    bucket_word = "bucket"  # what the top folder is called in messages

    def bucket_exists(self, loc: Where) -> bool:
        """Does the bucket (container) of `loc` exist? True where there are none, and
        when the answer is not known (a refused or failed look-up)."""
        return True

    def folder_exists(self, loc: Where) -> bool:
        """Asked when a listing of `loc` found nothing: is it an (empty) folder?"""
        try:
            return bool(loc.fs.isdir(loc.fullpath))
        except Exception:
            return False

    def listing(self, loc: Where) -> list[str]:
        """Every file below `loc` (full paths), or [] when there is nothing."""
        try:
            loc.fs.invalidate_cache(loc.fullpath)
            found = loc.fs.find(loc.fullpath)
        except Exception as exc:
            if is_missing(exc):
                return []
            raise storage_error(loc, "list", exc) from None
        return [str(p) for p in (found.keys() if isinstance(found, dict) else found)]


# -- the call's time budget ------------------------------------------------------------
_deadline: ContextVar[float | None] = ContextVar("mlemremote_deadline", default=None)


@contextmanager
def call_budget() -> Iterator[None]:
    """Within this block, every request of the call shares one budget of
    `retry_max_seconds` (retries and slow bodies included). Nested calls share it."""
    if _deadline.get() is not None:
        yield
        return
    token = _deadline.set(time.monotonic() + current_settings().retry_max_seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def until(deadline: float) -> Iterator[None]:
    """Within this block, the call's time budget ends at `deadline` (a `time.monotonic()`
    value), whatever budget was in force (an artifact's own budget, see `_artifacts`)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(loc: Where | str, what: str) -> float:
    """Seconds left for a request of this call (a whole budget outside any call
    scope, as in bulk calls, where each read has its own); `TimeBudgetError` if none."""
    deadline = _deadline.get()
    budget = current_settings().retry_max_seconds
    if deadline is None:
        return budget
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeBudgetError(
            f"cannot {what} {loc}: the call's time budget (retry_max_seconds={budget:g}) is spent"
        )
    return left


def budget_spent(loc: Where | str, what: str) -> TimeBudgetError:
    budget = current_settings().retry_max_seconds
    return TimeBudgetError(
        f"cannot {what} {loc}: no answer within the call's time budget "
        f"(retry_max_seconds={budget:g}); a slow or stalled server?"
    )


# -- helpers ---------------------------------------------------------------------------
def fetch(loc: Where, get: Callable[[], T]) -> T | None:
    """Run one read, retrying transient faults; None when the file (or, with `loc.rev`,
    that version) is missing."""
    try:
        return retrying(loc, "read", get)
    except MlemError:
        raise
    except Exception as exc:
        if is_missing(exc, versioned=loc.rev is not None):
            return None
        raise storage_error(loc, "read", exc) from None


def retrying(loc: Where, what: str, call: Callable[[], T]) -> T:
    """`call()`, retried on transient faults with exponential backoff and full jitter,
    bounded by attempts and by the call's time budget (see `configure`)."""
    settings = current_settings()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.retry_attempts)
        | tenacity.stop_after_delay(remaining(loc, what)),
        wait=tenacity.wait_random_exponential(
            multiplier=settings.retry_initial_wait, max=settings.retry_max_wait
        ),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=lambda state: logger.debug(
            redact(
                f"retrying {what} of {loc} (attempt {state.attempt_number} failed: "
                f"{type(state.outcome.exception()).__name__ if state.outcome else ''})"
            )
        ),
        reraise=True,
    )
    return retrying(call)


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failed tries in a row, as `retrying` waits between
    tries: exponential from `retry_initial_wait`, at most `retry_max_wait`, full jitter."""
    settings = current_settings()
    wait = tenacity.wait_random_exponential(
        multiplier=settings.retry_initial_wait, max=settings.retry_max_wait
    )
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = max(1, failures)
    return float(wait(state))


def too_large(loc: Where, limit: int, size: int | None = None) -> MetafileTooLargeError:
    """The cap was hit: `size` when the server said how big the file is; else reading
    stopped as soon as the bytes passed the cap."""
    if size is not None and size > limit:
        told = f"is {size} bytes"
    else:
        told = f"has more than {limit} bytes"
    return MetafileTooLargeError(
        f"{loc} {told}, over the {limit}-byte cap for metafiles; reading stopped at "
        f"the cap, so it was not loaded (configure(max_metafile_bytes=...) to raise it)"
    )


class AsyncStore(Store):
    """A store whose filesystem is async (s3fs, gcsfs, adlfs, http): a read is one
    coroutine, `_get`, run on the filesystem's event loop (alone, or gathered by
    `read_many`), and every request is cut off when the call's time budget ends."""

    async_reads = True

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        blob: Blob = self.run(loc, "read", self._get, loc, limit)
        return blob

    def _read_if_changed_once(self, loc: Where, limit: int, last: Blob | None) -> Polled:
        answer: Blob | Unchanged = self.run(loc, "read", self._get_if_changed, loc, limit, last)
        return answer

    async def _get_if_changed(self, loc: Where, limit: int, last: Blob | None) -> Blob | Unchanged:
        """`_get`, conditional on `last` where the backend can make it so."""
        return await self._get(loc, limit)

    def listing(self, loc: Where) -> list[str]:
        try:
            loc.fs.invalidate_cache(loc.fullpath)
            found = self.run(loc, "list", loc.fs._find, loc.fullpath)
        except MlemError:
            raise
        except Exception as exc:
            if is_missing(exc):
                return []
            raise storage_error(loc, "list", exc) from None
        return [str(p) for p in (found.keys() if isinstance(found, dict) else found)]

    def bucket_exists(self, loc: Where) -> bool:
        try:
            return bool(
                retrying(
                    loc,
                    "look up the bucket of",
                    lambda: self.run(loc, "look up the bucket of", self._bucket_exists, loc),
                )
            )
        except Exception:
            return True  # not known: the error that led here stands

    async def _bucket_exists(self, loc: Where) -> bool:
        return True

    def folder_exists(self, loc: Where) -> bool:
        # Folders are key prefixes: with no key below it, only a bucket's root exists.
        key = loc.fs.split_path(loc.fullpath)[1]
        return not key.strip("/") and self.bucket_exists(loc)

    def entries(self, loc: Where) -> list[str]:
        try:
            loc.fs.invalidate_cache(loc.fullpath)
            found = self.run(loc, "list", loc.fs._ls, loc.fullpath, detail=False)
        except MlemError:
            raise
        except Exception as exc:
            if is_missing(exc) or isinstance(exc, NotADirectoryError):
                return []
            raise storage_error(loc, "list", exc) from None
        return [str(p) for p in found]

    def run(self, loc: Where, what: str, func: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """`await func(*args, **kw)` on the filesystem's loop, within the time budget."""
        try:
            return sync(loc.fs.loop, func, *args, timeout=remaining(loc, what), **kw)
        except FSTimeoutError:
            raise budget_spent(loc, what) from None


GATHER_WINDOW = 0.2  # seconds a read goes on gathering bytes once some have arrived


class AsyncBody:
    """A response body on an async filesystem's event loop, read from another thread.

    Each `read` gathers up to `most` bytes on the loop (one hop per chunk, not per
    network packet): it waits for the first bytes, then takes what comes within
    `GATHER_WINDOW`, so a slow link hands out what it has rather than waiting for a
    whole chunk. The next chunk is asked for as soon as one is handed out, so that the
    network goes on while the reader hashes and writes (at most one chunk is taken
    ahead of what was asked). A read waits at most `retry_max_seconds` (and never past
    the call's budget) for its first bytes: a stall raises `RequestTimeout`, a
    transient fault. `close` drops the connection (on the loop, from any thread)."""

    def __init__(
        self,
        loc: Where,
        read: Callable[[int], Awaitable[bytes]],
        close: Callable[[], Any],
        size: int | None,
        token: str | None,
        start: int = 0,
    ) -> None:
        self._loc, self._read, self._close = loc, read, close
        self.size, self.token, self.start = size, token, start
        self._closed = False
        self._ahead: concurrent.futures.Future[bytes] | None = None
        self._pending: asyncio.Future[bytes] | None = None  # a read of the body, on the loop
        self._left = b""
        self._ended = False

    def read(self, most: int) -> bytes:
        if self._closed:
            raise ConnectionError(f"the read of {self._loc} was closed")
        if not self._left and not self._ended:
            ahead, self._ahead = self._ahead, None
            if ahead is None:
                ahead = self._ask(most)
            self._left = self._wait(ahead)
            self._ended = not self._left
        chunk, self._left = self._left[:most], self._left[most:]
        if not self._left and not self._ended and self._ahead is None:
            self._ahead = self._ask(most)  # the next chunk, while this one is used
        return chunk

    def _ask(self, most: int) -> concurrent.futures.Future[bytes]:
        return asyncio.run_coroutine_threadsafe(self._gather(most), self._loc.fs.loop)

    async def _gather(self, most: int) -> bytes:
        loop = asyncio.get_running_loop()
        parts: list[bytes] = []
        total = 0
        window_end: float | None = None
        while total < most:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._read(most - total))
            if window_end is None:  # (a cancelled wait leaves the read to the next one)
                chunk = await asyncio.shield(self._pending)
            else:
                done, _ = await asyncio.wait({self._pending}, timeout=window_end - loop.time())
                if not done:
                    break
                chunk = self._pending.result()
            self._pending = None
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if window_end is None:
                window_end = loop.time() + GATHER_WINDOW
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _wait(self, ahead: concurrent.futures.Future[bytes]) -> bytes:
        wait = min(remaining(self._loc, "read"), current_settings().retry_max_seconds)
        try:
            return ahead.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            ahead.cancel()
            raise RequestTimeout(f"no bytes of {self._loc} arrived for {wait:.3g} s") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
        loop = self._loc.fs.loop
        with contextlib.suppress(RuntimeError):  # a closed loop: so is the connection
            loop.call_soon_threadsafe(self._drop)

    def _drop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        _quietly(self._close)


def _quietly(close: Callable[[], Any]) -> None:
    try:
        result = close()
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
    except Exception:
        return  # closing a broken connection may fail: it is gone


# -- reading a body under the cap, within the budget -----------------------------------
READ_CHUNK = 64 * 1024  # the most a store asks of a response body at once


async def read_capped(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
    """A response body, read `READ_CHUNK` bytes at a time until it ends or holds more
    than `limit` bytes: never more than `limit + 1` bytes are asked for, whatever the
    server sent or said it would send. The caller closes the response when the result is
    over `limit` (the rest is never read)."""
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = await read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


async def take_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """`read_capped` for a body that an SDK hands out in blocks of its own size: at most
    one block past the cap is taken from the stream, and at most `limit + 1` bytes kept."""
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            break
    return b"".join(parts)[: limit + 1]


def told_start(content_range: object) -> int:
    """Where a body starts in the object, as the server told it: the first byte of a
    Content-Range (`bytes 100-999/1000`), else 0 (a whole-object answer)."""
    text = str(content_range or "").strip()
    if not text.startswith("bytes "):
        return 0
    first = text[6:].partition("-")[0].strip()
    return int(first) if first.isdigit() else 0


def told_size(content_range: object, content_length: object) -> int | None:
    """The object's size as the server told it: the total of a Content-Range (an answer
    to a range request), else the Content-Length of a whole-object answer; None when it
    did not say. Only ever used to word an error: the cap is enforced on the bytes."""
    if content_range:
        total = str(content_range).rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    if isinstance(content_length, int):
        return content_length
    if isinstance(content_length, str) and content_length.strip().isdigit():
        return int(content_length)
    return None


class RequestTimeout(ConnectionError):
    """An SDK's own timeout of one request (connect or read): a transient fault, retried
    within the call's time budget. It must not pass as the end of the budget, which is
    what `fsspec.asyn.sync` (and so `AsyncStore.run`) makes of any `TimeoutError`."""


def own_timeouts(func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`func`, with the `TimeoutError`s it raises itself turned into `RequestTimeout`.
    The budget's end never shows inside `func`: there it is a cancellation."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise RequestTimeout(f"the request timed out ({type(exc).__name__})") from exc

    return wrapper
