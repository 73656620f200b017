"""Issue 4: writers killed with SIGKILL at random points during link(), many times.

Afterwards the alias is always a whole link, the old one or the new one, and loads.
Memory is left out: an in-process filesystem dies with the process that holds it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPORT, Backend

from mlemremote.api import init, link, load_meta
from mlemremote.core.objects import MlemModel

KILLS = 12
WORKER = str(Path(__file__).with_name("crash_worker.py"))


@pytest.mark.parametrize(
    "backend", ["local", "s3-moto", "s3-seaweedfs", "gcs", "azure"], indirect=True
)
def test_killed_writers_leave_a_whole_alias(backend: Backend) -> None:
    so = backend.storage_options
    repo = backend.uri("repo")
    init(repo, storage_options=so)
    for name in ("v1", "v2"):
        MlemModel(model_type={"name": name}).dump(
            name, repo=repo, external=True, storage_options=so
        )
    link("v1", source_repo=repo, target="latest", target_repo=repo, storage_options=so)
    rng = random.Random(20261127)
    job = json.dumps({"repo": repo, "storage_options": so})
    seen = set()
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, WORKER, job], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0, 0.15))  # somewhere inside a later link()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        loaded = load_meta("latest", repo=repo, storage_options=so)
        assert (loaded.model_type or {}).get("name") in ("v1", "v2")
        seen.add(loaded.model_type["name"] if loaded.model_type else None)
    REPORT["crash safety"].append(
        f"{backend.name}: {KILLS} writers killed with SIGKILL mid-link(); the alias loaded "
        f"whole every time (ended on {sorted(seen)})"
    )
