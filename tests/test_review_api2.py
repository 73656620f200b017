"""Hostile review of the public surface added with pull, open_artifact, watch,
explain_storage_options and messages (rev2-api): each test failed, or guards a property
checked for the first time, on the commit before its fix."""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlemremote.api import explain_storage_options, load_meta, open_artifact, pull, watch
from mlemremote.core.errors import InvalidArgumentError, InvalidLinkError, MlemError
from mlemremote.core.objects import MlemModel


def test_a_pathlib_path_is_refused_as_a_type_not_as_an_invalid_path(tmp_path: Path) -> None:
    """A `pathlib.Path` where a path or URI string is taken (MLEM's `load_meta` refuses
    one too) said "not a valid path: PosixPath('/a/real/path')"; it names the type."""
    MlemModel().dump(str(tmp_path / "m"))
    calls = [
        lambda p: load_meta(p),
        lambda p: pull(p, str(tmp_path / "out")),
        lambda p: open_artifact(p),
        lambda p: watch(p),
        lambda p: explain_storage_options(p),
        lambda p: load_meta("m", repo=p),
    ]
    for call in calls:
        with pytest.raises(InvalidLinkError, match=r"must be a string, not PosixPath: give str"):
            call(tmp_path / "m")


def test_the_stream_of_open_artifact_raises_only_mlem_errors(tmp_path: Path) -> None:
    """`read(-5)`, `read(1.5)`, `seek(0)` and a read after `close()` on what
    `open_artifact` returns raised io's ValueError, TypeError and UnsupportedOperation:
    past the error boundary of every public method. Each is a `MlemError` now, and
    still of the class io raises (readers that check for UnsupportedOperation work)."""
    data = b"weights" * 1000
    (tmp_path / "w").write_bytes(data)
    art = {"uri": "w", "size": len(data), "hash": hashlib.md5(data).hexdigest()}
    MlemModel(artifacts={"w": art}).dump(str(tmp_path / "m"))
    stream = open_artifact(str(tmp_path / "m"))
    misuses: list[tuple[Callable[[], object], type[Exception]]] = [
        (lambda: stream.read(-5), ValueError),
        (lambda: stream.read(1.5), TypeError),  # type: ignore[arg-type]
        (lambda: stream.read(10**30), ValueError),
        (lambda: stream.seek(0), io.UnsupportedOperation),
        (lambda: stream.tell(), io.UnsupportedOperation),
        (lambda: stream.fileno(), io.UnsupportedOperation),
        (lambda: stream.write(b"x"), io.UnsupportedOperation),
    ]
    for misuse, io_class in misuses:
        with pytest.raises(MlemError) as info:
            misuse()
        assert isinstance(info.value, (InvalidArgumentError, io_class))
        assert info.value.__cause__ is None and info.value.__context__ is None
    assert stream.read(7) == b"weights"  # (nothing was consumed by the refusals)
    assert shutil_copy(stream) == data[7:]  # a reader in io's protocol still reads it
    stream.close()
    for after_close in (stream.read, stream.readline, stream.__enter__, lambda: next(stream)):
        with pytest.raises(InvalidArgumentError) as closed:
            after_close()
        assert isinstance(closed.value, ValueError)


def shutil_copy(stream: io.BufferedIOBase) -> bytes:
    out = io.BytesIO()
    shutil.copyfileobj(stream, out)
    return out.getvalue()
