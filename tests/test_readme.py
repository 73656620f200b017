"""Every `python` block of README.md runs as written, in order, against the emulators."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import fsspec
import pytest
from services import Endpoints

from mlemremote import MlemModel, init

README = Path(__file__).resolve().parent.parent / "README.md"


def fresh_bucket(protocol: str, bucket: str, *, versioned: bool = False) -> None:
    fs = fsspec.filesystem(protocol)  # fsspec's configuration: the test servers
    with contextlib.suppress(FileNotFoundError):
        fs.rm(bucket, recursive=True)
    if versioned and protocol == "s3":
        fs.mkdir(bucket)
        fs.make_bucket_versioned(bucket)
    else:
        fs.mkdir(bucket)


@pytest.mark.backends("s3", "gcs")
def test_readme_python_blocks_run(
    endpoints: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for bucket, versioned in (("ml-team", False), ("ml-versioned", True), ("ours", False)):
        fresh_bucket("s3", bucket, versioned=versioned)
    fresh_bucket("gs", "team-b")
    MlemModel(model_type={"type": "sklearn"}).dump("s3://ml-team/models/rf")
    init("gs://team-b/repo")
    MlemModel(model_type={"team": "b"}).dump("models/rf", repo="gs://team-b/repo", external=True)

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
