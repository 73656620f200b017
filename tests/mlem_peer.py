"""The real MLEM (0.1.14, the same link code as 0.2.0) in its own Python 3.9 environment.

`make test` and `make bench` build it once (`python tests/mlem_peer.py`) into
benchmarks/.peer-venv; `Peer` drives one long-lived MLEM process over JSON lines
(tests/peer_ops.py runs inside it). Without a Python 3.9 on the machine the environment is
not built and `missing_reason()` says why (the interop tests are then skipped with it).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "benchmarks" / ".peer-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
CONSTRAINTS = ROOT / "benchmarks" / "peer-constraints.txt"
READY = PEER_VENV / ".ready"
# What the environment holds: MLEM with S3 support, and scikit-learn to save real models.
REQUIREMENTS = ["mlem[s3]==0.1.14", "numpy", "scikit-learn==1.1.3"]


def find_python39() -> str | None:
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python")))
    for candidate in [*pyenv, shutil.which("python3.9")]:
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0
        ):
            return candidate  # (a pyenv shim without that version installed fails here)
    return None


def missing_reason() -> str | None:
    """Why the peer cannot run here, or None when it is ready."""
    if READY.exists() and READY.read_text() == _fingerprint():
        return None
    if find_python39() is None:
        return "MLEM 0.2.0 needs Python 3.9, and none was found (install it, e.g. pyenv)"
    return "the MLEM environment is not built: run `python tests/mlem_peer.py`"


def _fingerprint() -> str:
    return json.dumps([REQUIREMENTS, CONSTRAINTS.read_text()])


def ensure_peer(*, required: bool = True) -> Path | None:
    """Build the environment if it is missing or stale; its Python, or None (with
    `required=False`) when no Python 3.9 can be found."""
    if missing_reason() is None:
        return PEER_PYTHON
    python39 = find_python39()
    if python39 is None:
        if required:
            sys.exit(f"the peer: {missing_reason()}")
        print(f"the peer (MLEM) is not built: {missing_reason()}", flush=True)
        return None
    print(f"creating the peer's environment (MLEM 0.2.0) in {PEER_VENV} ...", flush=True)
    shutil.rmtree(PEER_VENV, ignore_errors=True)
    subprocess.run([python39, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # flatdict's sdist needs pkg_resources at build time: an older setuptools, no isolation.
    subprocess.run([*pip, "--upgrade", "pip", "setuptools<70", "wheel"], check=True)
    subprocess.run([*pip, "--no-build-isolation", "flatdict"], check=True)
    subprocess.run([*pip, *REQUIREMENTS, "-c", str(CONSTRAINTS)], check=True)
    READY.write_text(_fingerprint())
    return PEER_PYTHON


def peer_env(s3_endpoint: str | None = None, key: str = "", secret: str = "") -> dict[str, str]:
    """The environment MLEM runs in: no analytics; S3 options through fsspec's config
    folder (fsspec 2022.5 reads nested options only from files)."""
    env = {**os.environ, "MLEM_NO_ANALYTICS": "true", "MLEM_DEBUG": "false"}
    for name in ("AWS_ENDPOINT_URL", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    if s3_endpoint is not None:
        confdir = tempfile.mkdtemp(prefix="mlem-peer-conf-")
        conf = {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": s3_endpoint}}
        Path(confdir, "s3.json").write_text(json.dumps({"s3": conf}))
        env["FSSPEC_CONFIG_DIR"] = confdir
    return env


class PeerError(Exception):
    """MLEM raised: its class name and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class Peer:
    """One long-lived MLEM process (tests/peer_ops.py); `peer(op, **args)` runs one
    operation in `cwd` and returns its JSON answer, or raises `PeerError`."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        python = ensure_peer()
        assert python is not None
        self.env = env if env is not None else peer_env()
        self.proc = subprocess.Popen(
            [str(python), str(ROOT / "tests" / "peer_ops.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def __call__(self, op: str, cwd: str | None = None, **args: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, "cwd": cwd, "args": args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the MLEM process ended during {op}")
        answer = json.loads(line)
        if "error" in answer:
            raise PeerError(answer["error"], answer["message"])
        return answer["result"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)
        confdir = self.env.get("FSSPEC_CONFIG_DIR")
        if confdir:
            shutil.rmtree(confdir, ignore_errors=True)


if __name__ == "__main__":
    ensure_peer(required=False)
