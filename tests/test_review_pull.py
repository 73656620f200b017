"""Hostile review of issue 13 part 1 (pull, get, open_artifact): each test failed, or
guards a property checked for the first time, on the commit before its fix."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import Backend

from mlemremote import _artifacts
from mlemremote.api import init, link, load_meta, pull
from mlemremote.core.errors import ArtifactIntegrityError
from mlemremote.core.objects import MlemModel


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_resumed_read_of_a_replaced_file_is_refused(backend: Backend) -> None:
    """A read cut after its first chunk resumes pinned to the content it started on: a
    file replaced (same size) in between is an error, never a splice of two contents
    that happens to be caught only by the MD5 (or, with the MD5 of the splice, not)."""
    so = backend.storage_options
    old, new = os.urandom(3 << 20), os.urandom(3 << 20)
    backend.write(backend.uri("w.bin"), old)
    spliced = old[: 1 << 20] + new[1 << 20 :]
    art = {"uri": "w.bin", "size": len(old), "hash": md5(spliced)}  # the splice's MD5
    MlemModel(artifacts={"w": art}).dump(backend.uri("m"), external=True, storage_options=so)
    obj = load_meta(backend.uri("m"), storage_options=so)
    (found,) = _artifacts.artifacts_of(obj)
    transfer = _artifacts.Transfer(found)
    try:
        transfer.open()
        got = transfer.read()
        assert 0 < len(got) < len(old)
        transfer.close()  # (the connection cut)
        backend.write(backend.uri("w.bin"), new)
        with pytest.raises(ArtifactIntegrityError):
            while transfer.read():
                pass
    finally:
        transfer.close()
