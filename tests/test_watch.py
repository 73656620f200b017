"""Issue 13, part 2: watching an alias, on every backend.

A watch yields what the alias resolves to, then an event each time a hop of its chain
moves; an idle poll costs one conditional request per hop and no body bytes (counted
by the `reads` fixture everywhere, and on the wire by the fault proxy for the clouds);
a move to a broken target is reported and the last good object kept; faults back off
and never end the watch. Polls are driven one by one (`poll()`), or by iterating with a
short interval: no test waits for more than an interval.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
import pytest
from conftest import REPORT, Backend, Reads, git
from faultproxy import FaultProxy

from mlemremote import _links
from mlemremote._stores import local as local_store
from mlemremote.api import configured, init, link, load_meta, watch
from mlemremote.core.errors import (
    InvalidArgumentError,
    InvalidLinkError,
    LinkCycleError,
    MlemObjectNotFound,
    StorageError,
    WrongMetaType,
)
from mlemremote.core.objects import MlemModel

INTERVAL = 0.05  # seconds between two polls of an iterated watch
SCRIPT = str(Path(sys.executable).with_name("mlemremote"))
WATCH_SUMMARY = REPORT["watch: one idle poll"]


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files just written are compared by their bytes on local disk (their timestamps
    cannot tell a write in the same tick apart): the tests' files count as old."""
    monkeypatch.setattr(local_store, "RACY_SECONDS", 0.0)


def a_repo(b: Backend, *models: str, links: dict[str, str] | None = None) -> str:
    """A repo written directly (one PUT a file): `models` (external, named by their
    `model_type`), and `links`: alias name -> the metafile it names, in `.mlem/link/`."""
    repo = b.uri("repo")
    b.write(b.uri("repo", ".mlem", "config.yaml"), "")
    for name in models:
        b.write(b.uri("repo", f"{name}.mlem"), f"object_type: model\nmodel_type:\n  name: {name}\n")
    for name, to in (links or {}).items():
        b.write(b.uri("repo", ".mlem", "link", f"{name}.mlem"), link_yaml(to))
    return repo


def link_yaml(to: str) -> str:
    return f"object_type: link\nlink_type: model\npath: {to}\n"


def alias(b: Backend, repo: str, source: str, target: str, *, follow: bool = True) -> None:
    link(
        source,
        source_repo=repo,
        target=target,
        target_repo=repo,
        follow_links=follow,
        storage_options=b.storage_options,
    )


def name_of(event: object) -> str:
    return str((event.obj.model_type or {})["name"])  # type: ignore[attr-defined]


@pytest.mark.usefixtures("settled")
def test_watch_sees_the_middle_hop_of_a_3_hop_chain_move(backend: Backend, reads: Reads) -> None:
    """prod -> b -> c -> v1; b moves to c2 -> v2: seen at the next poll; idle polls cost
    one conditional read per hop, and hand back no bytes."""
    so = backend.storage_options
    chain = {"c": "v1.mlem", "b": ".mlem/link/c.mlem", "prod": ".mlem/link/b.mlem"}
    repo = a_repo(backend, "v1", "v2", links={**chain, "c2": "v2.mlem"})
    events = watch("prod", repo=repo, interval=INTERVAL, verify_every=None, storage_options=so)
    first = next(events)
    assert first.ok and name_of(first) == "v1" and first.poll == 1
    assert len(first.chain) == 4 and set(first.changed) == set(first.chain)
    assert first.chain[0].endswith("/.mlem/link/prod.mlem")

    reads.clear()
    for _ in range(3):
        assert events.poll() is None
    assert Counter(reads) == {uri: 3 for uri in first.chain}  # 1 request per hop per poll
    assert sum(reads.body_bytes.values()) == 0
    WATCH_SUMMARY.append(
        f"{backend.name}: {len(reads) / 3:g} conditional reads for {len(first.chain)} "
        f"metafiles, {sum(reads.body_bytes.values())} body bytes handed back"
    )

    middle = backend.uri("repo", ".mlem", "link", "b.mlem")
    backend.write(middle, backend.read(middle))  # written again, the same bytes: no move
    assert events.poll() is None

    alias(backend, repo, "c2", "b", follow=False)  # the middle hop moves
    before = events.polls
    moved = next(events)
    assert events.polls - before <= 2  # within two intervals
    assert moved.ok and name_of(moved) == "v2" and moved.obj is events.last_good
    assert moved.chain[0] == first.chain[0] and moved.chain[1] == first.chain[1]
    assert moved.chain[2].endswith("/.mlem/link/c2.mlem")
    assert first.chain[0] not in moved.changed  # prod itself did not change
    assert {moved.chain[1], moved.chain[2], moved.chain[3]} <= set(moved.changed)
    events.close()
    assert list(events) == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_chain_that_never_holds_still_is_read_3_times_a_poll_then_again(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(rev3) A writer that moves prod while every resolution reads it: each poll
    resolves at most 3 times and serves nothing (never a torn chain, never a loop);
    once the writer stops, the next poll serves what prod says."""
    so = backend.storage_options
    a_repo(backend, "v1", "v2", "v3", links={"prod": ".mlem/link/mid.mlem", "mid": "v1.mlem"})
    prod = backend.uri("repo", ".mlem", "link", "prod.mlem")
    real = _links.parsed
    reads = Counter[str]()
    moving = [True]

    def parsed(loc: Any, blob: Any, build: Any) -> Any:
        found = real(loc, blob, build)
        if str(loc).endswith("/link/prod.mlem"):
            reads["prod"] += 1
            if moving[0]:  # prod moves every time it was read, before mid is
                to = ".mlem/link/mid.mlem" if reads["prod"] % 2 else "v2.mlem"
                backend.write(prod, link_yaml(to) + f"# {reads['prod']}\n")
        return found

    monkeypatch.setattr(_links, "parsed", parsed)
    events = watch(prod, interval=INTERVAL, storage_options=so)
    for poll in range(1, 4):
        assert events.poll() is None
        assert reads["prod"] == 3 * poll and events.error is None and events.last_good is None
    moving[0] = False
    event = events.poll()
    assert event is not None and event.ok and event.error is None
    assert reads["prod"] == 10


def test_a_hop_that_moves_while_a_later_one_is_read_is_never_served(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prod -> mid -> v1; right after prod is read, prod moves to v2 and mid to v3: the
    chain read (prod's old bytes, mid's new ones: v3) never was what prod resolved to,
    and was yielded as ok. It is read again until its hops hold still: v2."""
    so = backend.storage_options
    a_repo(backend, "v1", "v2", "v3", links={"prod": ".mlem/link/mid.mlem", "mid": "v1.mlem"})
    prod = backend.uri("repo", ".mlem", "link", "prod.mlem")
    mid = backend.uri("repo", ".mlem", "link", "mid.mlem")
    real = _links.parsed
    moves = [(prod, "v2.mlem"), (mid, "v3.mlem")]

    def parsed(loc: Any, blob: Any, build: Any) -> Any:
        found = real(loc, blob, build)
        if str(loc).endswith("/link/prod.mlem") and moves:
            while moves:  # (between the read of prod and that of mid)
                at, to = moves.pop(0)
                backend.write(at, link_yaml(to))
        return found

    monkeypatch.setattr(_links, "parsed", parsed)
    events = watch(prod, interval=INTERVAL, storage_options=so)
    first = events.poll()
    assert first is not None and first.ok and name_of(first) == "v2"
    assert len(first.chain) == 2 and not moves
    # A torn read that looks broken (mid moved to a missing file meanwhile) is not
    # reported as a broken target either.
    backend.write(mid, link_yaml("v1.mlem"))
    backend.write(prod, link_yaml(".mlem/link/mid.mlem"))  # prod -> mid -> v1 again
    moves.extend([(prod, "v3.mlem"), (mid, "missing.mlem")])
    event = events.poll()
    assert event is not None and not moves
    assert (event.ok, event.error, name_of(event)) == (True, None, "v3")


def test_watch_reports_broken_targets_and_keeps_the_last_good(backend: Backend) -> None:
    so = backend.storage_options
    a_repo(backend, "v1", "v2", links={"prod": "v1.mlem"})
    backend.write(backend.uri("repo", "data.mlem"), "object_type: dataset\n")
    at = backend.uri("repo", ".mlem", "link", "prod.mlem")
    events = watch(at, interval=INTERVAL, storage_options=so)  # (by its path: 1 read a hop)
    assert name_of(events.poll()) == "v1"

    def moved_to(text: str, error: type[Exception]) -> None:
        backend.write(at, "object_type: link\n" + text)
        event = events.poll()
        assert event is not None and not event.ok and isinstance(event.error, error)
        assert name_of(event) == "v1" and event.obj is events.last_good  # still v1
        assert events.error is event.error and events.fault is None

    moved_to("link_type: model\npath: missing.mlem\n", MlemObjectNotFound)  # dangling
    reported = events.error
    assert events.poll() is None and events.error is reported  # reported once, still broken
    backend.write(backend.uri("repo", "loop.mlem"), link_yaml(".mlem/link/prod.mlem"))
    moved_to("link_type: model\npath: loop.mlem\n", LinkCycleError)  # a cycle
    moved_to("link_type: model\npath: data.mlem\n", WrongMetaType)  # a dataset
    # A link the policy refuses (http is not a link scheme; metadata addresses never are).
    moved_to("link_type: model\npath: http://169.254.169.254/m.mlem\n", InvalidLinkError)

    backend.write(at, link_yaml("v2.mlem"))  # repaired
    event = events.poll()
    assert event is not None and event.ok and name_of(event) == "v2"
    assert events.error is None


def test_watch_survives_faults_and_idle_polls_send_no_body(
    proxied: tuple[Backend, FaultProxy],
) -> None:
    """Through a fault proxy: an idle poll is one request per hop with no body on the
    wire (fake-gcs-server ignores ifGenerationNotMatch: there it is the body); faults
    past the retries are logged, back off, and end nothing; a 304 for a moved file is
    caught by the next full verification."""
    b, proxy = proxied
    so = b.storage_options
    repo = a_repo(b, "v1", "v2", "v3", links={"prod": "v1.mlem"})
    events = watch("prod", repo=repo, interval=INTERVAL, verify_every=4, storage_options=so)
    first = events.poll()
    assert first is not None and name_of(first) == "v1"

    proxy.requests.clear()
    sent = len(proxy.transfers)
    assert events.poll() is None and events.poll() is None
    requests = sum(proxy.requests.values())
    body = sum(t.written for t in proxy.transfers[sent:])
    assert requests == 2 * len(first.chain), proxy.requests
    if b.name == "gcs":  # the server sent each metafile whole, as if unconditional
        assert 0 < body <= 2 * sum(len(b.read(uri)) for uri in first.chain)
    else:
        assert body == 0 and all(t.status == 304 for t in proxy.transfers[sent:])
    REPORT["watch: one idle poll, on the wire"].append(
        f"{b.name}: {requests / 2:g} requests, {body / 2:g} body bytes for "
        f"{len(first.chain)} metafiles"
    )

    # Faults past the retries: each poll gives up, and the watch goes on.
    with configured(retry_attempts=1):
        proxy.fail("503", per_request=2, match=lambda m, p: m == "GET" and "prod" in p)
        assert events.poll() is None and events.fault is not None
        assert events.poll() is None and events.fault is not None
        assert events.next_wait() > INTERVAL * (1 - events.jitter)  # backing off
    proxy.clear()
    prod = b.uri("repo", ".mlem", "link", "prod.mlem")
    b.write(prod, link_yaml("v2.mlem"))  # (moved directly: one PUT)
    moved = next(events)
    assert moved.ok and name_of(moved) == "v2" and events.fault is None

    # A server that answers 304 although the file changed: the verification poll (every
    # 4th) reads the chain in full and finds the move.
    b.write(prod, link_yaml("v3.mlem"))
    alias_path = ("link/prod.mlem", "link%2Fprod.mlem")  # (GCS quotes the object's name)

    def conditional_get(method: str, path: str) -> bool:  # (S3, Azure: in a header)
        plain, _, query = path.partition("?")
        wanted = not query or "ifGenerationNotMatch" in query
        return method == "GET" and plain.endswith(alias_path) and wanted

    proxy.fail("304", per_request=1, match=conditional_get)
    while events.polls % 4 != 3:
        assert events.poll() is None  # fooled until the verification
    assert proxy.injected["304"] == 1
    late = events.poll()
    assert late is not None and late.ok and name_of(late) == "v3"

    # A 304 to a read that asked for no condition is an error, never an empty file.
    any_get = lambda m, p: m == "GET" and p.split("?")[0].endswith(alias_path)  # noqa: E731
    proxy.fail("304", per_request=9, match=any_get)
    with pytest.raises(StorageError):
        load_meta(".mlem/link/prod", repo=repo, storage_options=so)


def test_local_files_too_young_for_their_timestamps_are_compared_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten in place, same size, same mtime, on a filesystem whose timestamps
    are coarser than the writes: its status cannot tell, its bytes do. A file read within
    `RACY_SECONDS` of its last write is compared by its bytes; an older one by `stat`."""
    # Coarse timestamps: the status shows whole seconds, and no change time.
    monkeypatch.setattr(local_store, "_status", lambda info: f"{info.st_ino}-{info.st_mtime:.0f}")
    path = tmp_path / "m.mlem"

    def rewrite_in_place(old: str, new: str) -> None:
        before = os.stat(path)
        with open(path, "r+") as handle:  # the same inode, the same size
            handle.write(path.read_text().replace(old, new))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    MlemModel(model_type={"name": "v1"}).dump(str(tmp_path / "m"))
    events = watch(str(tmp_path / "m"), interval=INTERVAL)
    assert name_of(events.poll()) == "v1"
    rewrite_in_place("v1", "v8")
    event = events.poll()
    assert event is not None and name_of(event) == "v8"

    # The control: were the file trusted by its status, that write would go unseen
    # (until the next full verification), which is what the age rule prevents.
    monkeypatch.setattr(local_store, "RACY_SECONDS", 0.0)
    trusting = watch(str(tmp_path / "m"), interval=INTERVAL, verify_every=None)
    assert name_of(trusting.poll()) == "v8"
    rewrite_in_place("v8", "v9")
    assert trusting.poll() is None


def test_a_file_that_takes_over_the_name_is_found_by_the_verification(tmp_path: Path) -> None:
    """`<repo>/prod.mlem` comes before `.mlem/link/prod.mlem` in MLEM's lookup: a file
    written there later is not a hop the polls look at, but the full verification is."""
    b = Backend("local", "file", str(tmp_path / "root"), None, fsspec.filesystem("file"))
    repo = a_repo(b, "v1", "v2", links={"prod": "v1.mlem"})
    events = watch("prod", repo=repo, interval=INTERVAL, verify_every=3)
    assert name_of(events.poll()) == "v1"
    b.write(b.uri("repo", "prod.mlem"), link_yaml("v2.mlem"))
    assert events.poll() is None  # poll 2: the hops are as they were
    event = events.poll()  # poll 3: in full, as load_meta reads it
    assert event is not None and name_of(event) == "v2"
    assert event.chain[0].endswith("/repo/prod.mlem")


def test_watch_follows_a_branch_of_a_git_repo(tmp_path: Path) -> None:
    """At `rev="main"`, the alias is read from the commit main is on: a commit that
    moves it is seen at the next poll."""
    b = Backend("local", "file", str(tmp_path / "root"), None, fsspec.filesystem("file"))
    repo = a_repo(b, "v1", "v2", links={"prod": "v1.mlem"})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    events = watch("prod", repo=repo, rev="main", interval=INTERVAL)
    first = events.poll()
    assert first is not None and name_of(first) == "v1"
    b.write(b.uri("repo", ".mlem", "link", "prod.mlem"), link_yaml("v2.mlem"))
    assert events.poll() is None  # not committed: not on main
    git(repo, "commit", "-qam", "v2")
    moved = events.poll()
    assert moved is not None and moved.ok and name_of(moved) == "v2"


def test_watch_arguments_are_checked(tmp_path: Path) -> None:
    for bad in ({"interval": 0}, {"interval": "1"}, {"jitter": 1}, {"max_events": 0},
                {"verify_every": True}, {"stop": object()}, {"interval": float("inf")},
                {"interval": 10**400}, {"jitter": 10**400}):  # fmt: skip
        # (10**400 seconds raised UnexpectedError: OverflowError in math.isfinite)
        with pytest.raises(InvalidArgumentError, match=r"^\w+ must be [^\n]{0,120}$"):
            watch(str(tmp_path / "x"), **bad)  # type: ignore[arg-type]


def test_close_from_another_thread_ends_a_long_wait(tmp_path: Path) -> None:
    """An interval past `threading.TIMEOUT_MAX` waited (it raised OverflowError, not an
    MlemError); `close()` from another thread ends the wait, with the watch's own stop
    event or a caller's (it waited out the whole interval)."""
    MlemModel(model_type={"name": "v1"}).dump(str(tmp_path / "v1"))
    link(str(tmp_path / "v1"), target=str(tmp_path / "prod"))
    for stop in (None, threading.Event()):
        events = watch(str(tmp_path / "prod"), interval=1e10, stop=stop)
        assert next(events).ok
        closer = threading.Timer(0.1, events.close)
        closer.start()
        started = time.monotonic()
        assert list(events) == []
        assert time.monotonic() - started < 30  # (a hang guard: 1e10 s before)
        closer.join()
        assert stop is None or not stop.is_set()  # a caller's event is left as it was


def cli_watching_prod(tmp_path: Path) -> tuple[str, subprocess.Popen[str]]:
    """A repo where `prod` links to v1 (v2 beside it), and `mlemremote watch prod` on it."""
    repo = str(tmp_path / "repo")
    init(repo)
    for name in ("v1", "v2"):
        MlemModel(model_type={"name": name}).dump(name, repo=repo, external=True)
    link("v1", source_repo=repo, target="prod", target_repo=repo)
    proc = subprocess.Popen(
        [SCRIPT, "watch", "prod", "-r", repo, "--interval", str(INTERVAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return repo, proc


def test_cli_watch_prints_a_line_per_change_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    repo, proc = cli_watching_prod(tmp_path)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["status"] == "ok" and first["uri"].endswith("/v1.mlem")
        link("v2", source_repo=repo, target="prod", target_repo=repo)
        second = json.loads(proc.stdout.readline())
        assert second["status"] == "ok" and second["uri"].endswith("/v2.mlem")
        assert second["changed"] and second["error"] is None
        (tmp_path / "repo" / ".mlem" / "link" / "prod.mlem").write_text(
            "object_type: link\nlink_type: model\npath: gone.mlem\n"
        )
        broken = json.loads(proc.stdout.readline())
        assert broken["status"] == "broken" and broken["uri"].endswith("/v2.mlem")
        assert broken["error_type"] == "MlemObjectNotFound"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_watch_ends_when_its_reader_goes(tmp_path: Path) -> None:
    """`mlemremote watch prod | head -1` on an alias that never moves: the watch would
    never write again, so never learn the pipe is closed; it ends (141, as SIGPIPE)."""
    _, proc = cli_watching_prod(tmp_path)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["status"] == "ok"
        proc.stdout.close()  # as `head -1` exits
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 141


def test_a_closed_watch_reads_nothing(tmp_path: Path) -> None:
    MlemModel().dump(str(tmp_path / "m"))
    events = watch(str(tmp_path / "m"), interval=INTERVAL)
    assert events.poll() is not None
    events.close()
    (tmp_path / "m.mlem").unlink()  # a read now would be an event (broken)
    assert events.poll() is None and events.polls == 1
    with pytest.raises(StopIteration):
        next(events)
