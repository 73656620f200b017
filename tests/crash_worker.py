"""A writer that moves an alias back and forth until it is killed (test_crash.py)."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from mlemremote.api import link

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    repo, so = args["repo"], args["storage_options"]
    moves = 0
    while True:
        link(f"v{moves % 2 + 1}", source_repo=repo, target="latest", target_repo=repo,
             storage_options=so)  # fmt: skip
        moves += 1
        if moves == 1:
            print("ready", flush=True)
