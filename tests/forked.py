"""Writer processes for the stress and crash tests, without an interpreter start-up each.

A writer must be a process of its own (its own connections; killable with SIGKILL in the
middle of a write), but a new Python that imports the library and a cloud SDK costs
1-2 s of CPU, most of what those tests spent. So writers are forked from one process that
has imported them already: multiprocessing's forkserver, started once per test process,
itself a fresh interpreter that has touched no filesystem, network or thread. Each writer
gets the environment its test has at the moment it starts, as a new process would.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

# Imported once in the forkserver: what the writers import.
PRELOAD = ["mlemremote.api", "s3fs", "gcsfs", "adlfs", "stress_worker", "crash_worker"]
_context: ForkServerContext | None = None


def _context_once() -> ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(
    target: Callable[..., None], env: dict[str, str], conn: Connection, args: tuple[Any, ...]
) -> None:
    os.environ.clear()
    os.environ.update(env)
    target(conn, *args)


def start(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Connection]:
    """Start `target(conn, *args)` in a writer process; returns it and the other end of
    `conn`. `target` must be a module-level function (it is named, not pickled whole)."""
    context = _context_once()
    ours, theirs = context.Pipe()
    process = context.Process(target=_child, args=(target, dict(os.environ), theirs, args))
    process.start()
    theirs.close()
    return process, ours
