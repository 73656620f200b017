"""Issue 4: hostile and bad input. Each case: a clear typed error, nothing written or
changed, on every backend. Credentials never show in YAML, messages, repr() or logs."""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPORT, Backend

from mlemremote import _links
from mlemremote.api import check, configured, init, link, load_many, load_meta
from mlemremote.core.errors import (
    DeserializationError,
    InvalidLinkError,
    LinkChainTooLongError,
    LinkCycleError,
    MetafileTooLargeError,
    MlemError,
    MlemObjectNotFound,
    NotAFileError,
    ObjectExistsError,
)
from mlemremote.core.objects import MlemModel

TRIED: list[str] = []
# In a parallel run the whole module runs on one worker: test_report_counts, last,
# counts what every test before it put in TRIED.
pytestmark = pytest.mark.xdist_group("hostile")

BAD_METAFILES = {
    "malformed": b"object_type: link\npath: [unclosed\n",
    "not-a-mapping": b"- a\n- list\n",
    "scalar": b"just text\n",
    "empty": b"",
    "alias-bomb": (
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"object_type: model\nmodel_type: {t: *d}\n"
    ),
    "python-object-tag": b"!!python/object/apply:os.system ['touch /tmp/pwned']\n",
    "python-name-tag": b"object_type: !!python/name:os.system model\n",
    "non-utf8": b"object_type: model\nname: \xff\xfe\xfa\n",
    "unknown-object-type": b"object_type: pipeline\n",
    "wrong-field-type": b"object_type: link\nlink_type: model\npath: {a: 1}\n",
    "missing-field": b"object_type: link\nlink_type: model\n",
    "link-type-list": b"object_type: link\nlink_type: [model]\npath: ./x.mlem\n",
}


def opts(backend: Backend) -> dict[str, Any]:
    return {"storage_options": backend.storage_options}


@pytest.mark.parametrize("case", sorted(BAD_METAFILES))
def test_bad_metafiles(backend: Backend, case: str) -> None:
    backend.write(backend.uri("bad.mlem"), BAD_METAFILES[case])
    before = backend.files()
    with pytest.raises(DeserializationError) as info:
        load_meta(backend.uri("bad"), **opts(backend))
    assert "bad.mlem" in str(info.value)
    # Linking to it fails too, and nothing is written.
    with pytest.raises(MlemError):
        link(backend.uri("bad"), target=backend.uri("alias"), **opts(backend))
    assert backend.files() == before
    TRIED.append(f"metafile:{case}")


def test_metafile_over_the_size_cap(backend: Backend) -> None:
    body = b"object_type: model\nmodel_type: {pad: '" + b"x" * 5000 + b"'}\n"
    backend.write(backend.uri("big.mlem"), body)
    with (
        configured(max_metafile_bytes=4096),
        pytest.raises(MetafileTooLargeError, match=r"big\.mlem"),
    ):
        load_meta(backend.uri("big"), **opts(backend))
    assert isinstance(load_meta(backend.uri("big"), **opts(backend)), MlemModel)
    TRIED.append("metafile:over-cap")


BAD_LINK_PATHS = {
    "climbs-out-of-bucket": "../../../../../../etc/passwd.mlem",
    "nul-byte": "./models/rf\x00.mlem",
    "windows-drive": "C:\\models\\rf.mlem",
    "windows-unc": "\\\\server\\share\\rf.mlem",
    "empty": "",
    "too-long": "./" + "a" * 1100 + ".mlem",
    "metadata-endpoint": "http://169.254.169.254/latest/meta-data/iam.mlem",
    "unknown-scheme": "gopher://example/rf.mlem",
}


@pytest.mark.parametrize("case", sorted(BAD_LINK_PATHS))
def test_hostile_link_paths(backend: Backend, case: str) -> None:
    path = BAD_LINK_PATHS[case]
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    text = yaml.safe_dump({"object_type": "link", "link_type": "model", "path": path})
    backend.write(backend.uri("repo", ".mlem", "link", "bad.mlem"), text)
    before = backend.files()
    with pytest.raises(InvalidLinkError):
        load_meta("bad", repo=repo, **opts(backend))
    assert backend.files() == before
    TRIED.append(f"link-path:{case}")


def test_repo_relative_link_cannot_leave_its_repo(backend: Backend) -> None:
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    MlemModel().dump(backend.uri("outside"), **opts(backend))
    for path in ("../../../outside.mlem", "models/../../outside.mlem"):
        text = yaml.safe_dump({"object_type": "link", "link_type": "model", "path": path})
        backend.write(backend.uri("repo", ".mlem", "link", "escape.mlem"), text)
        with pytest.raises(InvalidLinkError):
            load_meta("escape", repo=repo, **opts(backend))
        TRIED.append("link-path:leaves-repo")


def test_local_paths_in_remote_links_need_opting_in(backend: Backend, tmp_path: Any) -> None:
    MlemModel().dump(str(tmp_path / "local-model"))
    for path in (f"file://{tmp_path}/local-model.mlem", f"{tmp_path}/local-model.mlem"):
        text = yaml.safe_dump({"object_type": "link", "link_type": "model", "path": path})
        backend.write(backend.uri("l.mlem"), text)
        if backend.name in ("local", "memory"):
            if backend.name == "local":  # a local link may name a local path
                assert isinstance(load_meta(backend.uri("l"), **opts(backend)), MlemModel)
            continue
        with pytest.raises(InvalidLinkError, match="local path"):
            load_meta(backend.uri("l"), **opts(backend))
        with configured(allow_local_links=True):
            assert isinstance(load_meta(backend.uri("l"), **opts(backend)), MlemModel)
        TRIED.append("link-path:local-from-remote")


@pytest.mark.parametrize(
    "target", ["", "a\x00b", "C:\\x", "x" * 1100, "../x", ".mlem/model/x", "x/", "/abs"]
)
def test_hostile_target_names(backend: Backend, target: str) -> None:
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    MlemModel().dump("rf", repo=repo, external=True, **opts(backend))
    before = backend.files()
    with pytest.raises(InvalidLinkError):
        link("rf", source_repo=repo, target=target, target_repo=repo, **opts(backend))
    assert backend.files() == before
    TRIED.append("target-name")


@pytest.mark.parametrize("length", [1, 2, 3])
def test_cycles_name_the_chain_and_read_each_metafile_once(
    backend: Backend, length: int, reads: list[str]
) -> None:
    names = [f"c{i}" for i in range(length)]
    for i, name in enumerate(names):
        to = names[(i + 1) % length]
        backend.write(
            backend.uri(f"{name}.mlem"), f"object_type: link\nlink_type: model\npath: ./{to}.mlem\n"
        )
    reads.clear()
    with pytest.raises(LinkCycleError) as info:
        load_meta(backend.uri("c0"), **opts(backend))
    assert len(info.value.chain) == length + 1
    assert info.value.chain[0] == info.value.chain[-1]
    assert len(reads) == len(set(reads))  # nothing read twice (repo probes: once each)
    assert len([r for r in reads if not r.endswith("/.mlem/config.yaml")]) == length
    TRIED.append(f"cycle:{length}")


def test_chain_longer_than_the_hop_limit(backend: Backend, reads: list[str]) -> None:
    MlemModel().dump(backend.uri("rf"), **opts(backend))
    previous = "rf"
    for i in range(_links.MAX_HOPS + 1):
        backend.write(
            backend.uri(f"h{i}.mlem"),
            f"object_type: link\nlink_type: model\npath: ./{previous}.mlem\n",
        )
        previous = f"h{i}"
    reads.clear()
    with pytest.raises(LinkChainTooLongError) as info:
        load_meta(backend.uri(previous), **opts(backend))
    assert len(info.value.chain) == _links.MAX_HOPS + 2
    assert len(reads) == len(set(reads))
    TRIED.append("chain:too-long")


def test_credentials_never_leak(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """YAML, exception messages, repr() and logs, on every backend."""
    options = backend.storage_options or {}
    # Credentials, not endpoints: an endpoint in a message helps and gives nothing away.
    secrets = [str(options[k]) for k in ("key", "secret", "connection_string") if k in options]
    if "connection_string" in options:
        secrets.append(options["connection_string"].split("AccountKey=")[1].split(";")[0])
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    model = MlemModel()
    model.dump("rf", repo=repo, external=True, **opts(backend))
    made = link("rf", source_repo=repo, target="latest", target_repo=repo, **opts(backend))
    loaded = load_meta("latest", repo=repo, **opts(backend))
    messages += [repr(model), repr(made), repr(loaded), repr(loaded.location), str(made.location)]
    # Errors that carry backend details: a missing bucket, bad files, a bad link.
    calls = [lambda: load_meta("missing", repo=repo, **opts(backend))]
    if backend.scheme in ("s3", "gs", "az"):
        bad_bucket = f"{backend.scheme}://no-such-bucket-zz/x"
        calls += [
            lambda: load_meta(bad_bucket, **opts(backend)),
            lambda: link("rf", source_repo=repo, target=bad_bucket, **opts(backend)),
        ]
    for call in calls:
        with configured(retry_attempts=1), pytest.raises(MlemError) as info:
            call()
        messages += [str(info.value), repr(info.value)]
    messages += [record.getMessage() for record in caplog.records if "mlemremote" in record.name]
    written = [data.decode(errors="replace") for data in backend.files().values()]
    for text in messages + written:
        for secret in secrets:
            assert secret not in text
    TRIED.append("credentials")


def test_report_counts() -> None:
    """Runs last in this module: records how many hostile inputs were tried."""
    REPORT["hostile input"].append(f"{len(TRIED)} hostile inputs tried, each refused")


# -- local disk: names that hold something other than a regular file ----------------------
NOT_FILES = [
    "fifo",
    "socket",
    "directory",
    "symlink-to-device",
    "symlink-to-fifo",
    "symlink-to-directory",
]
HANG_SECONDS = 20  # generous: each call should return at once; only a hang reaches it


def _make_not_a_file(path: Path, kind: str) -> None:
    """Put a `kind` at `path` (something that is not a regular file)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        # AF_UNIX paths are short: bind in a short folder, then move the socket's name.
        short = tempfile.mkdtemp(prefix="s", dir="/tmp")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.path.join(short, "s"))
            os.rename(os.path.join(short, "s"), path)
        finally:
            sock.close()
            os.rmdir(short)
    elif kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("keep me")
    elif kind == "symlink-to-device":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-to-fifo":
        os.mkfifo(path.with_name("fifo-behind"))
        path.symlink_to("fifo-behind")
    elif kind == "symlink-to-directory":
        path.with_name("dir-behind").mkdir()
        path.symlink_to("dir-behind")
    else:  # pragma: no cover
        raise ValueError(kind)


def _state(path: Path) -> tuple[int, int, str | None]:
    info = os.lstat(path)
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return info.st_ino, info.st_mode, target


def _within_bound(call: Callable[[], Any]) -> Any:
    """`call()` in a thread: its result or the exception it raised; fail if it hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    assert not thread.is_alive(), "the call hung"
    return outcome[0]


@pytest.mark.parametrize("kind", NOT_FILES)
def test_local_names_that_are_not_files(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    MlemModel().dump(str(root / "m"))
    thing = root / "x.mlem"
    _make_not_a_file(thing, kind)
    (root / "to-x.mlem").write_text("object_type: link\nlink_type: model\npath: ./x.mlem\n")
    before = _state(thing)

    loaded = _within_bound(lambda: load_meta(str(root / "x")))
    assert isinstance(loaded, NotAFileError), loaded
    assert "x.mlem" in str(loaded)
    followed = _within_bound(lambda: load_meta(str(root / "to-x")))
    # Through a link, a symlink out of the link's folder is refused before it is opened.
    refused = (NotAFileError, InvalidLinkError) if kind.startswith("symlink") else NotAFileError
    assert isinstance(followed, refused), followed

    many = _within_bound(lambda: load_many([str(root / "x"), str(root / "m"), str(root / "to-x")]))
    assert isinstance(many, list), many
    assert isinstance(many[0], NotAFileError) and isinstance(many[2], refused)
    assert isinstance(many[1], MlemModel)

    checked = _within_bound(lambda: check(str(root)))
    assert isinstance(checked, list), checked
    by_name = {r.uri.rsplit("/", 1)[-1]: r for r in checked}
    assert by_name["to-x.mlem"].status == "invalid"
    detail = by_name["to-x.mlem"].detail
    assert "not a regular file" in detail or "symlink that leads elsewhere" in detail
    if "x.mlem" in by_name:  # listed itself (a FIFO, a socket, a device): reported too
        assert by_name["x.mlem"].broken

    linked = _within_bound(lambda: link(str(root / "m"), target=str(root / "x")))
    assert isinstance(linked, ObjectExistsError), linked
    dumped = _within_bound(lambda: MlemModel().dump(str(root / "x")))
    assert isinstance(dumped, NotAFileError), dumped
    assert _state(thing) == before
    if kind == "directory":
        assert (thing / "inside.txt").read_text() == "keep me"
    assert not [n for n in os.listdir(root) if n.startswith(".")]
    REPORT["hostile input"].append(f"local {kind} at a metafile's name: refused, untouched")


def test_local_broken_symlink_reads_as_missing_and_is_never_replaced(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    MlemModel().dump(str(root / "m"))
    thing = root / "x.mlem"
    thing.symlink_to("nowhere.mlem")
    before = _state(thing)
    loaded = _within_bound(lambda: load_meta(str(root / "x")))
    assert isinstance(loaded, MlemObjectNotFound), loaded
    linked = _within_bound(lambda: link(str(root / "m"), target=str(root / "x")))
    assert isinstance(linked, ObjectExistsError), linked
    dumped = _within_bound(lambda: MlemModel().dump(str(root / "x")))
    assert isinstance(dumped, NotAFileError), dumped
    assert _state(thing) == before
    assert not (root / "nowhere.mlem").exists()
    assert not [n for n in os.listdir(root) if n.startswith(".")]


@pytest.mark.parametrize("kind", ["directory", "fifo", "broken-symlink"])
def test_local_init_over_a_config_that_is_not_a_file(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "repo" / ".mlem" / "config.yaml"
    config.parent.mkdir(parents=True)
    if kind == "broken-symlink":
        config.symlink_to("nowhere.yaml")
    else:
        _make_not_a_file(config, kind)
    before = _state(config)
    outcome = _within_bound(lambda: init(str(tmp_path / "repo")))
    assert isinstance(outcome, MlemError), outcome
    assert _state(config) == before
