"""Hostile review of the public surface added with pull, open_artifact, watch,
explain_storage_options and messages (rev2-api): each test failed, or guards a property
checked for the first time, on the commit before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlemremote.api import explain_storage_options, load_meta, open_artifact, pull, watch
from mlemremote.core.errors import InvalidLinkError
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
