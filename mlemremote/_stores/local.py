"""Local disk: whole files renamed into place; compare-and-swap by atomic exchange.

Every write goes to a temporary file beside the target (`.<name>.mlem.<random>`, written
and fsynced), which then takes the target's name in one step, so that a reader never
sees a partial file. How it takes the name depends on what the write expects:

- `Expect.ANY` (a model's `dump`): `os.replace`.
- `Expect.ABSENT` (create-only): `link(2)`, which is atomic and fails when the name exists.
- A token (compare-and-swap, every link write): under an exclusive `flock` on the folder
  (which serialises our own compare-and-swap writers) the target's token is checked, then
  the temporary file and the target are exchanged with `renameat2(RENAME_EXCHANGE)`
  (Linux; `renamex_np(RENAME_SWAP)` on macOS). The exchange is atomic against every other
  writer, including those that take no lock (a model's `dump`, any tool's `os.replace`):
  after it, the temporary name holds exactly what was at the target at that instant.
  If that is the file whose token was expected, the swap succeeded and the old file is
  unlinked. Otherwise it is exchanged back. If the temporary name then holds our own new
  file, nobody wrote meanwhile: it is unlinked and the write is a conflict. If it holds a
  file that someone else wrote between the two exchanges (replacing ours, as their
  `os.replace` would have), that file is newer than the one we just put back, so the two
  are exchanged once more; this repeats (at most `_MAX_EXCHANGES` times) until an exchange
  brings back the very file we had put at the target, which a newer write superseded, and
  only that file is unlinked. So nothing that another writer wrote is ever deleted unless
  a later write of theirs superseded it, exactly as without us; and no check-then-rename
  window remains in which a model written by a process that does not take our lock could
  be overwritten by a link. Files are told apart by inode while we hold a descriptor on
  each (an inode cannot be reused while it is open), never by name or content alone.
  Two things remain visible: for the instant between the two exchanges of a failed swap
  (only when another writer raced us after the token check), readers may see our new
  file; and a process killed in that instant leaves the displaced file under the hidden
  temporary name rather than at the target (nothing is deleted).

A conditional delete (removing a link) takes the same folder lock, checks the token,
then renames the file to a hidden temporary name (`os.rename` is atomic: it takes whatever
is at the name at that instant) and checks the token of what it took. The expected file is
unlinked; anything else (written by a process that does not take the lock, between the
check and the rename) is linked back to the name (`link(2)`, create-only: should a newer
file already be there, the one taken was superseded by it and is unlinked) and the delete
is a conflict. Readers may then, for that instant only, see no file at the name.

Where the exchange is not available (not Linux or macOS, an old kernel or C library, a
filesystem without it: EINVAL, ENOSYS, ENOTSUP), compare-and-swap falls back to the token
check under the folder lock followed by `os.replace`. That is race-free among our own
writers only: a model written by a process that does not take the lock, in the instant
between the check and the rename, can be overwritten. One warning on the `mlemremote`
logger names the folder the first time this happens in a process.

Anything at a metafile's name that is not a regular file (a folder, a FIFO, a socket, a
device, a broken symlink or a symlink to any of those) raises `NotAFileError`: a read
refuses it before reading (opened with O_NONBLOCK, so a FIFO cannot block; a socket cannot
be opened at all), a write refuses it and leaves it untouched. A symlink to a regular file
is read through; a write replaces the symlink itself, not the file it points at.

A watch polls a metafile with one `stat`: the file is unchanged while its status (device,
inode, size, modification and change times, to the nanosecond) is the one it had when it
was read. A file written less than `RACY_SECONDS` before it was read (by this machine's
clock; also when its times lie in the future) has no trusted status: timestamps are
coarser than writes (a few milliseconds on Linux, 2 s on FAT), so a second write in place
in the same tick, of the same size, would leave the status as it was. Such a file is read
again and its bytes compared, until a read finds it older than that.

A process killed in the middle of a write may leave a hidden `.<name>.mlem.<random>`
file beside the target; nothing reads those, and they can be removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import posixpath
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from mlemremote._settings import current as current_settings
from mlemremote._stores.base import (
    UNCHANGED,
    Blob,
    Body,
    Expect,
    Expected,
    Polled,
    Store,
    Where,
    WriteConflict,
    Written,
    changed,
    content_token,
    remaining,
    too_large,
)
from mlemremote.core.errors import (
    InvalidArtifactError,
    NotAFileError,
    StorageError,
    TimeBudgetError,
)

logger = logging.getLogger("mlemremote")

# Called between the steps of a compare-and-swap with the step's name ("locked",
# "swapped", "swapped back", "put back"): a seam for tests to inject a foreign write.
Between = Callable[[str], None]

# A file younger than this when it was read is compared by its bytes, not its status.
RACY_SECONDS = 3.0
_MAX_EXCHANGES = 64  # each one past the first two needs another writer's write in between
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# A descriptor that pins a directory entry's inode without opening the file behind it
# (a symlink itself, a FIFO without blocking).
_PIN_FLAGS = (
    os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    if hasattr(os, "O_PATH")
    else _READ_FLAGS | getattr(os, "O_SYMLINK", os.O_NOFOLLOW)
)


class LocalStore(Store):
    kind = "local disk"

    def describe(self, loc: Where) -> str:
        return "local disk (outside git)"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        fd, info = open_regular(loc.fullpath, str(loc))
        try:
            if info.st_size > limit:
                raise too_large(loc, limit, info.st_size)
            data = _read_fd(fd, limit + 1)
        finally:
            os.close(fd)
        modified = datetime.fromtimestamp(info.st_mtime, timezone.utc)
        return Blob(data, _file_token(info, data), modified=modified, stamp=_stamp(info))

    def _read_if_changed_once(self, loc: Where, limit: int, last: Blob | None) -> Polled:
        if last is not None and last.stamp is not None:
            info = os.stat(loc.fullpath)  # FileNotFoundError: gone (`fetch` answers None)
            if stat.S_ISREG(info.st_mode) and _status(info) == last.stamp:
                return UNCHANGED
        return self._read_once(loc, limit)

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        path = loc.fullpath
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if expect is Expect.ANY:
            refuse_non_file(path, str(loc))
            fd, tmp, token = _temp_file(path, data)
            try:
                os.replace(tmp, path)
            finally:
                os.close(fd)
                _remove(tmp)
            return Written(token)
        if expect is Expect.ABSENT:
            return Written(_create(path, data, str(loc)))
        limit = current_settings().max_metafile_bytes
        budget = remaining(loc, "write")
        return Written(
            compare_and_swap(path, data, expect, limit=limit, where=str(loc), budget=budget)
        )

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        fd, info = open_confined(loc.fullpath, str(loc), within)
        try:
            now = f"{info.st_dev:x}-{info.st_ino:x}-{info.st_mtime_ns:x}"
            if token is not None and token != now:
                raise changed(loc)
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return _FileBody(fd, info.st_size, now, offset)

    def _delete_once(self, loc: Where, expect: str) -> Written:
        limit = current_settings().max_metafile_bytes
        budget = remaining(loc, "delete")
        remove_if(loc.fullpath, expect, limit=limit, where=str(loc), budget=budget)
        return Written(None)


# -- reading ---------------------------------------------------------------------------
def open_regular(path: str, where: str) -> tuple[int, os.stat_result]:
    """A descriptor on the regular file at `path` (symlinks followed) and its status.

    Anything else raises `NotAFileError` without being read (a FIFO or a device is not
    even opened when it is seen first); a missing file raises `FileNotFoundError`."""
    try:
        _refuse_kind(os.stat(path), where)  # devices are refused before any open()
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR):  # a socket, a loop, ...
            raise NotAFileError(f"{where} is not a regular file; it was not read") from None
        raise
    try:
        info = os.fstat(fd)
        _refuse_kind(info, where)  # it may have changed since the stat above
    except BaseException:
        os.close(fd)
        raise
    return fd, info


class _FileBody:
    """An open regular file, read in chunks."""

    def __init__(self, fd: int, size: int, token: str, start: int) -> None:
        self._fd: int | None = fd
        self.size, self.token, self.start = size, token, start

    def read(self, most: int) -> bytes:
        if self._fd is None:
            raise ValueError("read of a closed file")
        return os.read(self._fd, most)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def open_confined(path: str, where: str, within: str | None) -> tuple[int, os.stat_result]:
    """A descriptor for reading the regular file at `path` (symlinks followed), which
    must be inside the folder `within` once every symlink is resolved.

    Where the system has `O_PATH` (Linux), the file is first pinned without being opened
    (so a FIFO or a device swapped in is never opened: opening some devices acts), its
    kind and place are judged on that descriptor, and the very same file is then opened
    for reading through it: no name is looked up twice, so a symlink or a device swapped
    in at any moment gains nothing. Elsewhere, `open_regular` and the same checks on the
    open descriptor. `InvalidArtifactError` for a file outside `within`, `NotAFileError`
    for anything but a regular file, `FileNotFoundError` when nothing is there."""
    o_path = getattr(os, "O_PATH", None)
    if o_path is None or not os.path.isdir("/proc/self/fd"):
        fd, info = open_regular(path, where)
    else:
        try:
            pinned = os.open(path, o_path | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotAFileError(f"{where} is a symlink loop; it was not read") from None
            raise
        try:
            _refuse_kind(os.fstat(pinned), where)
            fd = os.open(f"/proc/self/fd/{pinned}", _READ_FLAGS)
        finally:
            os.close(pinned)
        info = os.fstat(fd)
    try:
        _refuse_kind(info, where)
        if within is not None and not _fd_inside(fd, info, path, within):
            raise InvalidArtifactError(
                f"{where} leads out of {within} through a symlink; it was not read"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _fd_inside(fd: int, info: os.stat_result, path: str, folder: str) -> bool:
    """Is the file open at `fd` inside `folder` once every symlink is resolved? Judged
    on the descriptor itself where the system names it (`/proc/self/fd`), so that a
    symlink swapped in after a check cannot lead the read elsewhere; elsewhere, on the
    resolved path, which must still be the file that is open."""
    root = os.path.realpath(folder)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        try:
            now = os.stat(real)
        except OSError:
            return False
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False
    if real.endswith(" (deleted)") and not os.path.lexists(real):
        real = real[: -len(" (deleted)")]
    return real == root or real.startswith(root.rstrip("/") + "/")


def _refuse_kind(info: os.stat_result, where: str, *, verb: str = "read") -> None:
    if not stat.S_ISREG(info.st_mode):
        raise NotAFileError(
            f"{where} is {_kind(info.st_mode)}, not a regular file; it was not {verb}"
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "a special file"


def refuse_non_file(path: str, where: str) -> None:
    """Raise `NotAFileError` unless `path` is missing, a regular file, or a symlink to
    one (a broken symlink is refused: writing there would replace it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        try:
            info = os.stat(path)
        except OSError:
            raise NotAFileError(f"{where} is a broken symlink; it was left untouched") from None
    _refuse_kind(info, where, verb="replaced")


def _read_fd(fd: int, most: int) -> bytes:
    chunks: list[bytes] = []
    left = most
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _status(info: os.stat_result) -> str:
    return (
        f"{info.st_dev:x}-{info.st_ino:x}-{info.st_size:x}-"
        f"{info.st_mtime_ns:x}-{info.st_ctime_ns:x}"
    )


def _stamp(info: os.stat_result) -> str | None:
    """The status a later `stat` is compared with, or None while the file is too young
    for it to tell a write in the same timestamp tick (see the module's doc)."""
    newest = max(info.st_mtime_ns, info.st_ctime_ns)
    if time.time_ns() - newest < RACY_SECONDS * 1e9:
        return None
    return _status(info)


def _file_token(info: os.stat_result, data: bytes) -> str:
    # Every write renames a new file into place, so inode and mtime change with each
    # write, even when the content does not (no ABA for compare-and-swap).
    return f"{info.st_ino:x}-{info.st_mtime_ns:x}-{content_token(data)[7:23]}"


def token_of(path: str, limit: int, *, strict: bool = False, where: str = "") -> str | None:
    """The token of the regular file at `path` (symlinks followed), or None when there
    is none there, or it is over `limit` bytes: no token that a read gave can match.
    With `strict`, only a missing file is None: other errors are raised."""
    try:
        fd, info = open_regular(path, where or path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, NotAFileError):
        if strict:
            raise
        return None
    try:
        if info.st_size > limit:
            return None
        return _file_token(info, _read_fd(fd, limit + 1))
    finally:
        os.close(fd)


# -- writing ---------------------------------------------------------------------------
def _temp_file(path: str, data: bytes) -> tuple[int, str, str]:
    """A new file beside `path` holding `data` (fsynced, mode 0644): an open descriptor
    on it, its name and its token."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + posixpath.basename(path) + ".", dir=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.fchmod(fd, 0o644)
        token = _file_token(os.fstat(fd), data)
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    return fd, tmp, token


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _create(path: str, data: bytes, where: str) -> str:
    """Create-only: link a temporary file to `path`; `WriteConflict` when a file is
    there, `NotAFileError` when something else is (it is left untouched)."""
    fd, tmp, token = _temp_file(path, data)
    try:
        os.link(tmp, path)  # atomic, and fails when `path` exists (even a broken symlink)
    except FileExistsError:
        refuse_non_file(path, where)
        raise WriteConflict(f"{where} exists") from None
    finally:
        os.close(fd)
        _remove(tmp)
    return token


def compare_and_swap(
    path: str,
    data: bytes,
    expect: str,
    *,
    limit: int,
    where: str,
    between: Between | None = None,
    budget: float = 60.0,
) -> str:
    """Put `data` at `path` if the file there has the token `expect` (see the module's
    doc); its new token. `WriteConflict` when the token does not hold, `NotAFileError`
    when something that is not a file is there. `between` is called between the steps."""
    step = between or (lambda name: None)
    folder = os.path.dirname(path)
    with _folder_lock(folder, budget, where):
        refuse_non_file(path, where)
        if token_of(path, limit, strict=True, where=where) != expect:
            raise WriteConflict(f"{where} changed")
        step("locked")
        fd, tmp, token = _temp_file(path, data)
        try:
            try:
                _exchange(tmp, path)
            except _NoExchange as gap:
                _warn_once(folder, gap)
                os.replace(tmp, path)  # token checked above, under the lock
                return token
            except FileNotFoundError:
                raise WriteConflict(f"{where} was removed") from None
            step("swapped")
            try:
                _settle(path, tmp, fd, expect, limit, where, step)
            except OSError as exc:  # unexpected: keep whatever is at `tmp`, and say where
                if os.path.lexists(tmp) and not _same_file(tmp, fd):
                    raise StorageError(
                        f"cannot write {where} ({exc.strerror}); the file that was there "
                        f"may be at {tmp}: nothing was deleted"
                    ) from None
                raise
            return token
        finally:
            if _same_file(tmp, fd):  # our new file, not exchanged (or an error on the way)
                _remove(tmp)
            os.close(fd)  # only now: while it is open, its inode cannot be reused


def remove_if(
    path: str,
    expect: str,
    *,
    limit: int,
    where: str,
    between: Between | None = None,
    budget: float = 60.0,
) -> None:
    """Remove the file at `path` if it has the token `expect` (see the module's doc);
    `WriteConflict` when it does not (or is gone), `NotAFileError` when something that
    is not a file is there. `between` is called between the steps ("locked", "moved")."""
    step = between or (lambda name: None)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise WriteConflict(f"{where} is gone")
    with _folder_lock(folder, budget, where):
        refuse_non_file(path, where)
        if token_of(path, limit, strict=True, where=where) != expect:
            raise WriteConflict(f"{where} changed")
        step("locked")
        tmp = os.path.join(folder, f".{posixpath.basename(path)}.removed.{os.urandom(6).hex()}")
        try:
            os.rename(path, tmp)  # the entry itself (a symlink, not the file behind it)
        except FileNotFoundError:
            raise WriteConflict(f"{where} was removed") from None
        step("moved")
        if token_of(tmp, limit) == expect:
            os.unlink(tmp)
            return
        # Written by another process between our check and the rename: it goes back.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path, follow_symlinks=False)
        os.unlink(tmp)
        raise WriteConflict(f"{where} changed")


def _settle(
    path: str, tmp: str, ours: int, expect: str, limit: int, where: str, step: Between
) -> None:
    """After the first exchange (our file at `path`, what was there at `tmp`): keep ours
    if that was the expected file; otherwise put back the newest file written by others
    and raise `WriteConflict`. Unlinks at `tmp` only a file that the one now at `path`
    superseded (or our own)."""
    pins: list[int] = [ours]
    try:
        held = _pin(tmp)  # what we displaced
        pins.append(held)
        if token_of(tmp, limit) == expect:
            os.unlink(tmp)  # the expected file, replaced by ours: the swap succeeded
            return
        placed = ours  # the file we last put at the target
        name = "swapped back"
        for _ in range(_MAX_EXCHANGES):
            try:
                _exchange(tmp, path)  # `held` goes to the target, `tmp` gets what is there
            except FileNotFoundError:
                # Someone removed what we had put there (ours, or a file that one of theirs
                # superseded); the file we hold goes back, unless a new one is there now.
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path, follow_symlinks=False)  # the entry itself
                os.unlink(tmp)
                raise WriteConflict(f"{where} changed") from None
            step(name)
            name = "put back"
            came = _pin(tmp)
            pins.append(came)
            if _same(came, placed):
                # Nobody wrote between the exchanges: the target holds `held`, the newest
                # file; `tmp` holds ours, or an older file that `held` superseded.
                os.unlink(tmp)
                raise WriteConflict(f"{where} changed")
            # `came` was written over `placed` after `held` left the target: it is newer
            # than `held`, which we have just put back. Exchange again.
            placed, held = held, came
    finally:
        for fd in pins[1:]:
            os.close(fd)
    logger.warning(
        "%s kept changing while a compare-and-swap put back what others wrote; the "
        "newest file was left at %s",
        where,
        tmp,
    )
    raise StorageError(
        f"cannot write {where}: it kept changing while other writers' files were put back; "
        f"the newest is at {tmp}, nothing was deleted"
    )


def _pin(path: str) -> int:
    return os.open(path, _PIN_FLAGS)


def _same(a: int, b: int) -> bool:
    first, second = os.fstat(a), os.fstat(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _same_file(path: str, fd: int) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def _folder_lock(folder: str, budget: float, where: str) -> Iterator[None]:
    """An exclusive lock on the folder itself (no lock file left behind), waited for
    at most `budget` seconds: a writer that hangs (or is stopped) while it holds the
    lock cannot hold this call beyond its time budget (`TimeBudgetError`)."""
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + budget
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() + pause > deadline:
                    raise TimeBudgetError(
                        f"cannot write {where}: another writer has held the lock on its "
                        f"folder for the whole time budget ({budget:.3g} s)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- the atomic exchange ---------------------------------------------------------------
class _NoExchange(Exception):
    """The OS or the filesystem cannot exchange two names atomically."""


_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h


def _libc_function(name: str) -> Any:
    """The C library's function `name` (a ctypes function), or None."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def _renameat2() -> Any:
    """Linux's `renameat2` (a ctypes function), or None."""
    renameat2 = _libc_function("renameat2") if sys.platform.startswith("linux") else None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        renameat2.argtypes += [ctypes.c_uint]
    return renameat2


def _make_exchange() -> Callable[[str, str], None]:
    """`exchange(a, b)`: swap the two names atomically (both must exist), raising
    `OSError` as the system call does and `_NoExchange` where it is not available."""
    if sys.platform.startswith("linux"):
        renameat2 = _renameat2()
        if renameat2 is not None:

            def linux(a: str, b: str) -> None:
                _check(
                    renameat2(
                        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
                    ),
                    a,
                    b,
                )

            return linux
    elif sys.platform == "darwin":
        renamex_np = _libc_function("renamex_np")
        if renamex_np is not None:
            renamex_np.argtypes = [
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]

            def darwin(a: str, b: str) -> None:
                _check(renamex_np(os.fsencode(a), os.fsencode(b), _RENAME_SWAP), a, b)

            return darwin
    return _no_exchange


def _check(result: int, a: str, b: str) -> None:
    if result == 0:
        return
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        raise _NoExchange(os.strerror(code))
    raise OSError(code, os.strerror(code), a, None, b)


def _no_exchange(a: str, b: str) -> None:
    raise _NoExchange(f"no atomic exchange of two names on {sys.platform}")


_exchange = _make_exchange()


def exchange_names(a: str, b: str) -> None:
    """Swap what the names `a` and `b` hold (two folders: a pulled folder and the one it
    replaces), atomically where the system can (`renameat2(RENAME_EXCHANGE)`). Elsewhere
    `b` is renamed aside, `a` takes its name, and the old `b` takes the name `a` (put
    back if the second rename fails): `b` is then missing for an instant, never mixed."""
    try:
        _exchange(a, b)
        return
    except _NoExchange:
        pass
    aside = f"{b}.old-{os.urandom(4).hex()}"
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except BaseException:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


_RENAME_NOREPLACE = 1  # linux/fs.h


def rename_noreplace(a: str, b: str) -> None:
    """Rename `a` to `b` unless something is at `b` (`FileExistsError`): atomically with
    `renameat2(RENAME_NOREPLACE)` on Linux; elsewhere a check, then the rename (which
    could then only replace an empty folder made in between)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_NOREPLACE)
        if result == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), b)
        if code not in _UNSUPPORTED:
            raise OSError(code, os.strerror(code), a, None, b)
    if os.path.lexists(b):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), b)
    os.rename(a, b)


_warned: set[str] = set()


def exchange_supported() -> bool:
    """Whether this OS offers an atomic exchange (a filesystem may still lack it)."""
    return _exchange is not _no_exchange


def _warn_once(folder: str, gap: _NoExchange) -> None:
    if _warned:  # once per process: the gap is the system's, seldom one folder's
        return
    _warned.add(folder)
    logger.warning(
        "local disk: cannot exchange files atomically in %s (%s); compare-and-swap falls "
        "back to a check under a folder lock and a rename, so a model written there by a "
        "process that does not take the lock, at the same instant as a link, may be "
        "overwritten by the link",
        folder,
        gap,
    )
