"""Reading and writing metafiles: one GET per read, whole-file writes only.

A reader never sees a partial metafile: on local disk we write a temporary file in the
same folder and rename it into place; object stores replace an object in one PUT.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import tempfile
from typing import Any

from mlemremote._location import Location
from mlemremote.core.errors import ObjectExistsError, ReadOnlyLocationError, StorageError


def _read_kwargs(loc: Location) -> dict[str, Any]:
    # s3fs sends a HEAD (for the size) before the GET unless reads are single-stream.
    if "s3" in (loc.fs.protocol if isinstance(loc.fs.protocol, tuple) else (loc.fs.protocol,)):
        return {"max_concurrency": 1}
    return {}


def read_bytes(loc: Location) -> bytes | None:
    """The content of the file at `loc` in one GET, or None when there is none."""
    try:
        data = loc.fs.cat_file(loc.fullpath, **_read_kwargs(loc))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
            return None
        raise StorageError(f"cannot read {loc}: {_describe(exc)}") from exc
    if isinstance(data, str):  # pragma: no cover - some backends return text
        data = data.encode()
    return bytes(data)


def write_bytes(loc: Location, data: bytes, *, create_only: bool) -> None:
    """Write the whole file at once; with `create_only`, fail if anything is there.

    Raises `ObjectExistsError` when `create_only` and the file exists (checked by the
    backend itself: O_EXCL-style link on disk, If-None-Match / ifGenerationMatch=0 on
    object stores), so two writers cannot both create it.
    """
    if loc.read_only:
        raise ReadOnlyLocationError(f"cannot write {loc}: {loc.scheme}:// is read-only here")
    try:
        if loc.is_local:
            _write_local(loc.fullpath, data, create_only=create_only)
        else:
            loc.fs.pipe_file(loc.fullpath, data, mode="create" if create_only else "overwrite")
    except FileExistsError as exc:
        raise ObjectExistsError(f"{loc} already exists; nothing was written") from exc
    except OSError as exc:
        if create_only and _precondition_failed(exc):
            raise ObjectExistsError(f"{loc} already exists; nothing was written") from exc
        raise StorageError(f"cannot write {loc}: {_describe(exc)}") from exc
    if not loc.is_local:
        # Listing caches (gcsfs, adlfs) would otherwise hide the new file from this process.
        with contextlib.suppress(Exception):
            loc.fs.invalidate_cache(loc.fullpath)


def _write_local(path: str, data: bytes, *, create_only: bool) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + posixpath.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        if create_only:
            os.link(tmp, path)  # atomic, and fails when `path` exists
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _precondition_failed(exc: BaseException) -> bool:
    """SeaweedFS answers a failed If-None-Match as OSError(EINVAL) with the S3 error below."""
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
