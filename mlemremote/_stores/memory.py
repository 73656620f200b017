"""fsspec's in-process memory filesystem.

Every write to it passes through this process, so compare-and-swap (and a conditional
delete) is exact under one lock: the token is a write counter plus a content hash. A
watch's poll compares the file's bytes with those it read, in this process (no request):
writes made through fsspec directly do not count as ours, so the counter alone cannot
tell.
"""

from __future__ import annotations

import threading

from mlemremote._stores.base import (
    UNCHANGED,
    Blob,
    Body,
    BytesBody,
    Expect,
    Expected,
    Polled,
    Store,
    Where,
    WriteConflict,
    Written,
    changed,
    too_large,
)
from mlemremote._stores.base import content_token as _hash
from mlemremote.core.errors import NotAFileError


class MemoryStore(Store):
    kind = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by filesystem class: fsspec makes one instance per thread, while the
        # memory filesystem's files are shared by all of them.
        self._writes: dict[tuple[type, str], int] = {}

    def describe(self, loc: Where) -> str:
        return "memory://"

    def _token(self, loc: Where, data: bytes) -> str:
        return f"{self._writes.get((type(loc.fs), loc.fullpath), 0)}:{_hash(data)}"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        with self._lock:
            # The size is known without copying anything; at most the cap + 1 byte is.
            size = loc.fs.info(loc.fullpath).get("size")
            if isinstance(size, int) and size > limit:
                raise too_large(loc, limit, size)
            data = bytes(loc.fs.cat_file(loc.fullpath, start=0, end=limit + 1))
            if len(data) > limit:
                raise too_large(loc, limit)
            return Blob(data, self._token(loc, data))

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # The file is in this process already: one copy of it, handed out in chunks.
        with self._lock:
            if loc.fs.isdir(loc.fullpath) and not loc.fs.isfile(loc.fullpath):
                raise NotAFileError(f"{loc} is a folder, not a file; it was not read")
            data = bytes(loc.fs.cat_file(loc.fullpath))
            now = self._token(loc, data)
        if token is not None and token != now:
            raise changed(loc)
        return BytesBody(memoryview(data)[offset:], len(data), now, offset)

    def _read_if_changed_once(self, loc: Where, limit: int, last: Blob | None) -> Polled:
        if last is not None:
            with self._lock:
                files = getattr(loc.fs, "store", {})
                held = files.get(loc.fs._strip_protocol(loc.fullpath))
                # (`getvalue`, not a view: a view would stop a writer that appends in
                # place, in another thread, from growing the file meanwhile.)
                if held is not None and hasattr(held, "getvalue") and held.getvalue() == last.data:
                    return UNCHANGED
        return self._read_once(loc, limit)

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        key = (type(loc.fs), loc.fullpath)
        with self._lock:
            if isinstance(expect, str):
                self._holds(loc, expect)
            try:
                mode = "create" if expect is Expect.ABSENT else "overwrite"
                loc.fs.pipe_file(loc.fullpath, data, mode=mode)
            except FileExistsError as exc:
                raise WriteConflict(f"{loc} exists") from exc
            self._writes[key] = self._writes.get(key, 0) + 1
            return Written(self._token(loc, data))

    def _holds(self, loc: Where, expect: str) -> None:
        """`WriteConflict` unless the file is there with the token `expect` (under the lock)."""
        try:
            current = bytes(loc.fs.cat_file(loc.fullpath))
        except FileNotFoundError:
            raise WriteConflict(f"{loc} is gone") from None
        if self._token(loc, current) != expect:
            raise WriteConflict(f"{loc} changed")

    def _delete_once(self, loc: Where, expect: str) -> Written:
        key = (type(loc.fs), loc.fullpath)
        with self._lock:
            self._holds(loc, expect)
            loc.fs.rm_file(loc.fullpath)
            self._writes[key] = self._writes.get(key, 0) + 1  # a new file: a new token
            return Written(None)
