"""A writer that moves an alias back and forth until it is killed (test_crash.py).

With "before_log": true it kills itself right after its first alias write, before the
history entry is written: the worst moment for history to stay honest.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from mlemremote import _history
from mlemremote.api import link


def die(*args: Any, **kwargs: Any) -> None:
    print("moved", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    repo, so = args["repo"], args["storage_options"]
    if args.get("before_log"):
        _history.log_move = die  # type: ignore[assignment]
        link(args["to"], source_repo=repo, target="latest", target_repo=repo, storage_options=so)
    moves = 0
    while True:
        link(f"v{moves % 2 + 1}", source_repo=repo, target="latest", target_repo=repo,
             storage_options=so)  # fmt: skip
        moves += 1
        if moves == 1:
            print("ready", flush=True)
