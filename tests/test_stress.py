"""Issue 3: N writers move one alias M times each with compare-and-swap and retries.

Afterwards the successful moves equal the history entries (plus the creation) and, in
the log, no two moves replaced the same version: no update was lost. Writers are
processes (forked by tests/forked.py; threads for the in-process memory filesystem).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import forked
import pytest
import stress_worker
from conftest import BACKENDS, REPORT, VERSIONED, Backend

from mlemremote.api import history, init, link
from mlemremote.core.objects import MlemModel

WRITERS = 8
MOVES = 4
MODELS = ["v0", "v1", "v2"]
# In a parallel run these run one after another on one worker (beside other tests): each
# has 8 writer processes of its own.
pytestmark = pytest.mark.xdist_group("stress")
# "kept" (versioned_backend) differs from "not-kept" only where versions are kept: on
# memory and Azure it is the very same kind of bucket, so those run once.
CASES = [(b, v) for b in BACKENDS for v in ("kept", "not-kept") if b in VERSIONED or v != "kept"]


@pytest.mark.parametrize(("backend", "versions"), CASES, indirect=["backend"])
def test_concurrent_compare_and_swap_moves(
    backend: Backend, request: pytest.FixtureRequest, versions: str
) -> None:
    b = request.getfixturevalue("versioned_backend") if versions == "kept" else backend
    so = b.storage_options
    repo = b.uri("repo")
    init(repo, storage_options=so)
    for name in MODELS:
        MlemModel(model_type={"name": name}).dump(
            name, repo=repo, external=True, storage_options=so
        )
    link("v0", source_repo=repo, target="latest", target_repo=repo, storage_options=so)

    jobs = [
        {"repo": repo, "storage_options": so, "worker": w, "moves": MOVES, "models": MODELS}
        for w in range(WRITERS)
    ]
    if b.name == "memory":
        with ThreadPoolExecutor(WRITERS) as pool:
            results = list(pool.map(lambda job: stress_worker.run(**job), jobs))
    else:
        writers = [forked.start(stress_worker.in_process, job) for job in jobs]
        results = []
        for proc, conn in writers:
            assert conn.poll(300), "a writer still runs after 300 s"
            try:
                results.append(conn.recv())
            except EOFError:
                proc.join(10)
                pytest.fail(f"a writer died (exit code {proc.exitcode})")
            proc.join(30)
            conn.close()
            assert proc.exitcode == 0

    successes = sum(r["successes"] for r in results)
    conflicts = sum(r["conflicts"] for r in results)
    entries = history("latest", repo=repo, storage_options=so)
    assert successes == WRITERS * MOVES
    assert len(entries) == successes + 1  # every move, and the creation
    parents = [e.previous for e in entries if e.previous is not None]
    # Every write's token is unique (link writes carry a write id, so even S3's
    # content-MD5 ETags differ): two entries naming one parent would be a lost update.
    assert len(parents) == len(set(parents)), "two moves replaced the same version"
    source = (
        "versions" if versions == "kept" and b.name in VERSIONED and b.name != "local" else "log"
    )
    REPORT["compare-and-swap stress"].append(
        f"{b.name} ({source}): {WRITERS} writers x {MOVES} moves, {successes} moves, "
        f"{conflicts} conflicts retried, {len(entries)} history entries"
    )
