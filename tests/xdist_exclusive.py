"""pytest-xdist scheduling for this suite (`-n N --dist loadgroup`, as `make test` runs it).

- `xdist_group(name)`: the group's tests run on one worker, one after another, as with
  xdist's own loadgroup; every other test goes alone to whichever worker is free.
- `exclusive` tests (stress, races, time and memory bounds: tests whose figures or bounds
  assume the machine is theirs; conftest.py puts them in the group `exclusive`) are held
  back until every other test has run and every other worker has finished, then run on
  the one worker left: nothing of the suite runs beside them.

The groups reach the scheduler from the workers through a folder the controller makes
(`MLEMREMOTE_TEST_XDIST_GROUPS`): xdist's own channel, a `@group` suffix on the node id,
no longer works with pytest 9.2's structured node ids (pytest-xdist issue 1386).

A worker runs a test only once it knows the next one (or is told to stop), so "every
other test has run" means: no work queued, every other worker gone, and the last worker
holding at most one test, which it has not started.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

EXCLUSIVE = "exclusive"  # the group conftest.py gives the tests marked `exclusive`
ENV_GROUPS = "MLEMREMOTE_TEST_XDIST_GROUPS"  # the folder where workers put their groups
_FOLDER = pytest.StashKey[str]()


def _loadgroup(config: pytest.Config) -> bool:
    return bool(config.getvalue("dist") == "loadgroup")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and _loadgroup(config):
        folder = tempfile.mkdtemp(prefix="mlemremote-xdist-groups-")
        config.stash[_FOLDER] = folder
        os.environ[ENV_GROUPS] = folder  # the workers start after this


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(ENV_GROUPS, None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """In a worker: write down the group of each grouped test, by its final node id."""
    folder = os.environ.get(ENV_GROUPS)
    workerinput = getattr(session.config, "workerinput", None)
    if not folder or workerinput is None:
        return
    groups = {}
    for item in session.items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})  # fmt: skip
        if names:
            groups[item.nodeid] = "_".join(names)
    path = Path(folder, f"{workerinput['workerid']}.json")
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    os.replace(partial, path)  # (read only once whole)


class ExclusiveLastScheduling(LoadGroupScheduling):
    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.groups: dict[str, str] = {}
        self.held: dict[str, bool] | None = None  # the exclusive group, until its turn
        self.last: WorkerController | None = None  # the worker that will run it

    def _split_scope(self, nodeid: str) -> str:
        group = self.groups.get(nodeid)
        return group if group is not None else str(super()._split_scope(nodeid))

    def _read_groups(self) -> None:
        folder = os.environ.get(ENV_GROUPS)
        for path in sorted(Path(folder).glob("*.json")) if folder else []:
            self.groups.update(json.loads(path.read_text()))

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        self._read_groups()
        collection = next(iter(self.registered_collections.values()))
        held = {n: False for n in collection if self._split_scope(n) == EXCLUSIVE}
        if not held or len(held) == len(collection):
            super().schedule()
            return
        self.held = held
        # As LoadScope's schedule(), for every test but the held ones.
        self.collection = list(collection)
        for nodeid in collection:
            if nodeid not in held:
                self.workqueue.setdefault(self._split_scope(nodeid), {})[nodeid] = False
        if self.config.option.loadscopereorder:  # the largest groups first
            units = sorted(self.workqueue.items(), key=lambda unit: -len(unit[1]))
            self.workqueue.clear()
            self.workqueue.update(units)
        for node in self.nodes:
            if self.workqueue:
                self._assign_work_unit(node)
        for node in self.nodes:
            self._reschedule(node)

    @property
    def tests_finished(self) -> bool:
        return self.held is None and bool(super().tests_finished)

    @property
    def has_pending(self) -> bool:
        return self.held is not None or bool(super().has_pending)

    def _reschedule(self, node: WorkerController) -> None:
        if self.held is None or self.workqueue or node.shutting_down:
            super()._reschedule(node)
            return
        # Nothing else is queued: one worker stays for the exclusive group, the others stop.
        if self.last is None or self.last not in self.assigned_work:
            self.last = node
        if node is not self.last:
            node.shutdown()
        self._release()

    def remove_node(self, node: WorkerController) -> str | None:
        crashed = super().remove_node(node)
        if node is self.last:
            self.last = None
        if self.held is not None and not self.workqueue:
            for other in self.nodes:
                self._reschedule(other)
        return crashed

    def _release(self) -> None:
        """Send the exclusive group to the last worker once it is alone and idle."""
        last = self.last
        if self.held is None or last is None or self.workqueue:
            return
        if any(other is not last for other in self.assigned_work):
            return  # another worker is still finishing its tests
        if self._pending_of(self.assigned_work[last]) > 1:
            return  # it still runs a test of its own
        held, self.held = self.held, None
        self.workqueue[EXCLUSIVE] = held
        self._assign_work_unit(last)
        last.shutdown()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return ExclusiveLastScheduling(config, log) if _loadgroup(config) else None
