"""One writer of the compare-and-swap stress test: a process of its own (forked by
tests/forked.py), or a thread for the in-process memory filesystem.

`run` moves the alias `moves` times; returns {"successes": n, "conflicts": n}.
"""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from mlemremote.api import link, load_meta
from mlemremote.core.errors import AliasChangedError


def run(
    repo: str, storage_options: Any, worker: int, moves: int, models: list[str]
) -> dict[str, int]:
    successes = conflicts = 0
    for i in range(moves):
        target = models[(worker + i) % len(models)]
        while True:
            current = load_meta(
                "latest", repo=repo, follow_links=False, storage_options=storage_options
            )
            try:
                link(
                    target,
                    source_repo=repo,
                    target="latest",
                    target_repo=repo,
                    expected=current,
                    storage_options=storage_options,
                )
            except AliasChangedError:
                conflicts += 1
                continue
            successes += 1
            break
    return {"successes": successes, "conflicts": conflicts}


def in_process(conn: Connection, job: dict[str, Any]) -> None:
    """A writer process: runs the job, sends its figures back."""
    conn.send(run(**job))
