"""Backend adapters, one module per backend: what fsspec does not expose uniformly.

Each store (`base.Store`) reads a file in one request *with* the token that a conditional
write needs (S3 ETag, GCS generation, Azure ETag, a file token on disk), writes whole files
unconditionally, create-only or compare-and-swap, and lists object versions where the
backend keeps them. A reader never sees a partial file: local writes go to a temporary
file that is swapped or linked into place; object stores replace an object in one PUT.

- `local`: local disk; `memory`: fsspec's in-process filesystem; `git`: a git revision
  (read-only); `http`: http(s) (read-only); `s3`, `gcs`, `azure`: the object stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fsspec.asyn import sync

from mlemremote._foreign import is_missing, is_transient, storage_error
from mlemremote._settings import current as current_settings
from mlemremote._stores.azure import AzureStore
from mlemremote._stores.base import (
    UNCHANGED,
    Blob,
    Body,
    Expect,
    Expected,
    Polled,
    Store,
    Unchanged,
    Version,
    Where,
    WriteConflict,
    Written,
    backoff,
    budget_spent,
    call_budget,
    too_large,
)
from mlemremote._stores.gcs import GCSStore
from mlemremote._stores.git import GitRevisionStore
from mlemremote._stores.http import HTTPStore
from mlemremote._stores.local import LocalStore
from mlemremote._stores.memory import MemoryStore
from mlemremote._stores.s3 import S3Store
from mlemremote.core.errors import MlemError

__all__ = [
    "UNCHANGED",
    "Answer",
    "Blob",
    "Body",
    "Expect",
    "Expected",
    "Polled",
    "Store",
    "Unchanged",
    "Version",
    "Where",
    "WriteConflict",
    "Written",
    "backoff",
    "call_budget",
    "read_bytes",
    "read_many",
    "store_for",
]

_GENERIC = Store()
_GIT = GitRevisionStore()
_BY_PROTOCOL: dict[str, Store] = {
    "file": LocalStore(),
    "local": LocalStore(),
    "memory": MemoryStore(),
    "s3": S3Store(),
    "gs": GCSStore(),
    "abfs": AzureStore(),
    "http": HTTPStore(),
    "https": HTTPStore(),
}


def store_for(loc: Where) -> Store:
    """The adapter for the filesystem of `loc` (read-only `Store` for unknown ones)."""
    if loc.git_root is not None:
        return _GIT
    protocols = loc.fs.protocol if isinstance(loc.fs.protocol, tuple) else (loc.fs.protocol,)
    for protocol in protocols:
        if protocol in _BY_PROTOCOL:
            return _BY_PROTOCOL[protocol]
    return _GENERIC


def read_bytes(loc: Where) -> bytes | None:
    """The content of the file at `loc` in one GET, or None when there is none."""
    blob = store_for(loc).read(loc)
    return None if blob is None else blob.data


Answer = Blob | None | MlemError


def read_many(locs: Sequence[Where], concurrency: int) -> dict[int, Answer]:
    """Read many files at once: those on stores with coroutine reads are gathered on their
    event loop, at most `concurrency` requests in flight, one request each.

    The answer by index for each file whose outcome is final: its blob, None when it is
    missing, or a `MlemError` (over the cap, or a `StorageError` for a permanent error).
    Files on other stores, and files that met a transient fault, are left out:
    `Store.read` reads those one by one, with retries.
    """
    limit = current_settings().max_metafile_bytes
    budget = current_settings().retry_max_seconds
    by_loop: dict[int, list[int]] = {}
    for index, loc in enumerate(locs):
        if store_for(loc).async_reads:
            by_loop.setdefault(id(loc.fs.loop), []).append(index)
    answers: dict[int, Answer] = {}
    for indexes in by_loop.values():
        batch = [locs[i] for i in indexes]
        outcomes = sync(batch[0].fs.loop, _gather_reads, batch, limit, concurrency, budget)
        for index, loc, outcome in zip(indexes, batch, outcomes, strict=True):
            if isinstance(outcome, Blob) and len(outcome.data) > limit:
                answers[index] = too_large(loc, limit)
            elif isinstance(outcome, (Blob, MlemError)):
                answers[index] = outcome
            elif is_missing(outcome, versioned=loc.rev is not None):
                answers[index] = None
            elif not is_transient(outcome):  # as `read` would: permanent, not retried
                answers[index] = storage_error(loc, "read", outcome)
    return answers


async def _gather_reads(
    locs: list[Where], limit: int, concurrency: int, budget: float
) -> list[Blob | MlemError | BaseException]:
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(loc: Where) -> Blob | MlemError:
        async with slots:
            # Each read has the whole budget: a slow body is cut off, not waited for.
            try:
                return await asyncio.wait_for(store_for(loc)._get(loc, limit), budget)
            except asyncio.TimeoutError:
                return budget_spent(loc, "read")

    return list(await asyncio.gather(*(one(loc) for loc in locs), return_exceptions=True))
