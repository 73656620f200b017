"""Writers that the crash test kills (test_crash.py), each a process of its own (forked
by tests/forked.py).

`move_until_killed` moves an alias back and forth until it is killed, and says "ready"
after its first move. `move_then_die_before_the_log` kills itself right after its alias
write, before the history entry is written: the worst moment for history to stay honest.
"""

from __future__ import annotations

import os
import signal
from multiprocessing.connection import Connection
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from mlemremote import _history
from mlemremote.api import link


def move_until_killed(conn: Connection, repo: str, so: Any) -> None:
    moves = 0
    while True:
        link(f"v{moves % 2 + 1}", source_repo=repo, target="latest", target_repo=repo,
             storage_options=so)  # fmt: skip
        moves += 1
        if moves == 1:
            conn.send("ready")


def move_then_die_before_the_log(conn: Connection, repo: str, so: Any, to: str) -> None:
    def die(*args: Any, **kwargs: Any) -> None:
        conn.send("moved")
        os.kill(os.getpid(), signal.SIGKILL)

    _history.log_move = die  # type: ignore[assignment]
    link(to, source_repo=repo, target="latest", target_repo=repo, storage_options=so)
