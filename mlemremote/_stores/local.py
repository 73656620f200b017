"""Local disk: a temporary file renamed into place; compare-and-swap under a folder lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone

from mlemremote._stores.base import (
    Blob,
    Expect,
    Expected,
    Store,
    Where,
    WriteConflict,
    Written,
    content_token,
    too_large,
)


class LocalStore(Store):
    kind = "local disk"

    def describe(self, loc: Where) -> str:
        return "local disk (outside git)"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        with open(loc.fullpath, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size > limit:
                raise too_large(loc, limit, stat.st_size)
            data = handle.read(limit + 1)
        modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
        return Blob(data, _file_token(stat, data), modified=modified)

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
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
