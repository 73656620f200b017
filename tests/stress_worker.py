"""One writer of the compare-and-swap stress test (run as a separate process).

Usage: python tests/stress_worker.py '<json>' with keys repo, storage_options, worker,
moves, models. Prints {"successes": n, "conflicts": n} as JSON.
"""

from __future__ import annotations

import json
import os
import sys
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


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(run(**args)))
