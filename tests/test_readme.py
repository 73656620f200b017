"""Every `python` block of README.md runs as written, in order, against the emulators."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import fsspec
import pytest
import yaml
from conftest import ENV_SHARED, GitWorld
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


@pytest.mark.backends("s3", "gcs", "git")
def test_readme_python_blocks_run(
    endpoints: Endpoints,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    git_world: GitWorld,
    no_user_config: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    # The reader's mirror of github.com is the test git server (`org/models.git`).
    mirror = {"url": git_world.server.url + "/", "insteadof": "https://github.com/"}
    no_user_config.write_text(yaml.safe_dump({"remotes": {"github-mirror": mirror}}))
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


@pytest.mark.backends("s3", "gcs", "azure")
def test_readme_shell_blocks_run(tmp_path: Path) -> None:
    """The README's `shell` blocks run as written, by bash, in a fresh folder (with
    `tests/` at hand and the venv's commands on PATH); the emulators they start are their
    own. (`sh` blocks, such as `make test`, are not run.)"""
    import os
    import subprocess
    import sys

    (tmp_path / "tests").symlink_to(README.parent / "tests")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    # (in a parallel run, not the servers the suite shares either: the block starts its own)
    for name in [ENV_SHARED, *os.environ.get(ENV_SHARED, "").split(",")]:
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    blocks = re.findall(r"```shell\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for number, block in enumerate(blocks, 1):
        done = subprocess.run(
            # (whatever the block started in the background stops with it, even on failure)
            ["bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"shell block {number}: {done.stdout}{done.stderr}"
        assert "latest" in done.stdout
