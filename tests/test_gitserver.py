"""Self-test of the Git smart-HTTP rig (tests/gitserver.py) with real clients: the `git`
CLI (protocol v0 and v2), dulwich, and raw HTTP for the hostile modes. A few seconds."""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.client import get_transport_and_path
from dulwich.objects import Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo
from gitserver import (
    EPOCH,
    GIT,
    SERVICE_HEADER,
    V0_CAPABILITIES,
    GitServer,
    client_env,
    mlem_link,
    mlem_model,
    models_repo,
    pkt_line,
)

TOKEN = "t0ken-for-private"
INFO_REFS = "/info/refs?service=git-upload-pack"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return models_repo(tmp_path_factory.mktemp("gitroot"))


@pytest.fixture(scope="module")
def running(fixture: dict[str, Any]) -> Iterator[GitServer]:
    with GitServer(fixture["root"], tokens={"private.git": TOKEN}) as server:
        yield server


@pytest.fixture
def server(running: GitServer) -> Iterator[GitServer]:
    running.hostile.clear()
    running.reset()
    yield running
    running.hostile.clear()


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GIT, *args], cwd=cwd, env=client_env(), capture_output=True, text=True, timeout=30
    )


def raw(server: GitServer, timeout: float = 5) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def wait_idle(server: GitServer, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while server.active_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_requests == 0


def pkt_lines(data: bytes) -> Iterator[bytes]:
    """The whole pkt-lines at the start of `data` (flush/delim packets as b"")."""
    pos = 0
    while pos + 4 <= len(data):
        size = int(data[pos : pos + 4], 16)
        if size < 4:
            yield b""
            pos += 4
            continue
        if pos + size > len(data):
            return
        yield data[pos + 4 : pos + size]
        pos += size


# -- the fixture ---------------------------------------------------------------------
def test_fixture_is_deterministic(fixture: dict[str, Any], tmp_path: Path) -> None:
    again = models_repo(tmp_path)
    for name in ("c1", "c2", "c3", "p1", "v1-annotated"):
        assert again[name] == fixture[name]
    repo = fixture["repo"]
    listing = git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", fixture["c3"])
    assert listing.stdout.split() == [
        ".mlem/config.yaml",
        ".mlem/link/latest.mlem",
        ".mlem/link/models/external.mlem",
        ".mlem/model/gb.mlem",
        ".mlem/model/rf.mlem",
        "models/external.mlem",
    ]
    show = git("--git-dir", str(repo), "show", f"{fixture['c2']}:.mlem/link/latest.mlem")
    assert show.stdout == mlem_link(".mlem/model/rf.mlem")
    old = git("--git-dir", str(repo), "show", "v1:.mlem/model/rf.mlem").stdout
    assert old == mlem_model("rf", "v1") != mlem_model("rf", "v2")
    parents = git("--git-dir", str(repo), "rev-parse", "dev^", "v1-annotated^{commit}").stdout
    assert parents.split() == [fixture["c2"], fixture["c1"]]


# -- (a) the git CLI -----------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 2])
def test_git_clone_fetch_by_sha_and_ls_remote(
    server: GitServer, fixture: dict[str, Any], tmp_path: Path, version: int
) -> None:
    url = server.repo_url("org/models.git")
    proto = f"protocol.version={version}"
    done = git("-c", proto, "clone", "-q", "--depth", "1", url, str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert git("rev-parse", "HEAD", cwd=tmp_path / "c").stdout.strip() == fixture["c2"]
    assert (tmp_path / "c" / ".mlem" / "model" / "rf.mlem").read_text() == mlem_model("rf", "v2")
    # a commit that no ref points at, by SHA (uploadpack.allowReachableSHA1InWant)
    fetched = git(
        "-c", proto, "fetch", "-q", "--depth", "1", "origin", fixture["c1"], cwd=tmp_path / "c"
    )
    assert fetched.returncode == 0, fetched.stderr
    assert git("rev-parse", "FETCH_HEAD", cwd=tmp_path / "c").stdout.strip() == fixture["c1"]

    server.reset()
    listed = git("-c", proto, "ls-remote", url)
    assert listed.returncode == 0, listed.stderr
    refs = dict(line.split("\t")[::-1] for line in listed.stdout.splitlines())
    assert refs["refs/heads/main"] == refs["HEAD"] == fixture["c2"]
    assert refs["refs/heads/dev"] == fixture["c3"]
    assert refs["refs/tags/v1"] == refs["refs/tags/v1-annotated^{}"] == fixture["c1"]
    # v2 lists refs with a POST of ls-refs; v0 has them in the GET's advertisement
    expected = [("GET", "/org/models.git" + INFO_REFS)]
    if version == 2:
        expected.append(("POST", "/org/models.git/git-upload-pack"))
    assert server.requests == expected


# -- (b) a token -----------------------------------------------------------------------
def test_private_repo_needs_its_token(
    server: GitServer, fixture: dict[str, Any], tmp_path: Path
) -> None:
    denied = git("clone", "-q", server.repo_url("private.git"), str(tmp_path / "no"))
    assert denied.returncode != 0
    wrong = git("clone", "-q", server.repo_url("private.git", token="nope"), str(tmp_path / "w"))
    assert wrong.returncode != 0
    assert "401" in wrong.stderr or "Authentication failed" in wrong.stderr
    done = git("clone", "-q", server.repo_url("private.git", token=TOKEN), str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    assert git("rev-parse", "HEAD", cwd=tmp_path / "ok").stdout.strip() == fixture["p1"]

    url = server.url + "/private.git" + INFO_REFS
    with pytest.raises(urllib.error.HTTPError) as refused:
        NO_PROXY.open(url, timeout=5)
    refused.value.close()
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="git"'
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    for auth in (f"Bearer {TOKEN}", f"Basic {basic}"):
        request = urllib.request.Request(url, headers={"Authorization": auth})
        with NO_PROXY.open(request, timeout=5) as answer:
            assert fixture["p1"].encode() in answer.read()
    # another repo on the same server needs no token
    with NO_PROXY.open(server.url + "/org/models.git" + INFO_REFS, timeout=5) as answer:
        assert answer.status == 200


# -- (c) dulwich -----------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 2])
def test_dulwich_refs_and_shallow_fetch_by_sha(
    server: GitServer, fixture: dict[str, Any], tmp_path: Path, version: int
) -> None:
    client, path = get_transport_and_path(server.repo_url("org/models.git"))
    refs = client.get_refs(path.encode(), protocol_version=version)
    assert refs.refs[Ref(b"refs/heads/main")] == fixture["c2"].encode()
    assert refs.symrefs[Ref(b"HEAD")] == b"refs/heads/main"
    assert len(server.requests) == 1 + (version == 2)  # v2: GET, then POST ls-refs

    server.reset()
    want = ObjectID(fixture["c1"].encode())  # no branch tip: a fetch by SHA
    repo = Repo.init_bare(str(tmp_path / "shallow.git"), mkdir=True)
    try:
        client, path = get_transport_and_path(server.repo_url("org/models.git"))
        client.fetch(
            path.encode(),
            repo,
            determine_wants=lambda refs, depth=None: [want],
            depth=1,
            protocol_version=version,
        )
        assert repo.get_shallow() == {want}
        commit = repo[want]
        assert isinstance(commit, Commit)
        assert commit.parents == []
        tree = repo[commit.tree]
        assert isinstance(tree, Tree)
        assert {entry.path for entry in tree.items()} == {b".mlem"}
    finally:
        repo.close()
    # v0: GET advertisement + one POST; v2: GET + POST ls-refs + POST fetch
    assert [method for method, _ in server.requests] == ["GET"] + ["POST"] * (1 + (version == 2))


def test_git_sends_chunked_and_gzip_bodies(
    server: GitServer, fixture: dict[str, Any], tmp_path: Path
) -> None:
    """A fetch into a repo of 3000 unrelated commits sends them all as `have`s: git
    gzips the mid-sized requests and streams the large ones chunked."""
    local = tmp_path / "local.git"
    assert git("init", "-q", "--bare", str(local)).returncode == 0
    commits = "".join(
        f"commit refs/heads/junk\nmark :{i + 1}\ncommitter A <a@example.com> {EPOCH + i} +0000\n"
        f"data 2\n{i % 10}\n" + (f"from :{i}\n" if i else "") + "\n"
        for i in range(3000)
    )
    imported = subprocess.run(
        [GIT, "--git-dir", str(local), "fast-import", "--quiet"],
        input=commits.encode(),
        env=client_env(),
        capture_output=True,
        timeout=30,
    )
    assert imported.returncode == 0, imported.stderr
    url = server.repo_url("org/models.git")
    fetch = ["-c", "http.postBuffer=70000", "fetch", "-q", url, "main:refs/heads/main"]
    fetched = git("--git-dir", str(local), "-c", "protocol.version=2", *fetch)
    assert fetched.returncode == 0, fetched.stderr
    assert git("--git-dir", str(local), "rev-parse", "main").stdout.strip() == fixture["c2"]
    posts = [h for h in server.request_headers if "Content-Type" in h]
    assert any(h.get("Transfer-Encoding") == "chunked" for h in posts)
    assert any(h.get("Content-Encoding") == "gzip" for h in posts)
    # before each chunked body git sends a 4-byte probe ("0000"), without Git-Protocol
    probes = [h for h in server.request_headers if h.get("Content-Length") == "4"]
    assert len(probes) == sum(h.get("Transfer-Encoding") == "chunked" for h in posts)
    assert all("Git-Protocol" not in h for h in probes)
    others = [h for h in server.request_headers if h not in probes]
    assert all(h.get("Git-Protocol") == "version=2" for h in others)


def test_chunked_gzip_request_body(server: GitServer, fixture: dict[str, Any]) -> None:
    command = pkt_line("command=ls-refs\n") + b"0001" + pkt_line("symrefs\n") + b"0000"
    body = gzip.compress(command)
    conn = raw(server)
    try:
        conn.request(
            "POST",
            "/org/models.git/git-upload-pack",
            body=iter([body[:7], body[7:]]),
            headers={
                "Content-Type": "application/x-git-upload-pack-request",
                "Content-Encoding": "gzip",
                "Git-Protocol": "version=2",
            },
            encode_chunked=True,
        )
        answer = conn.getresponse()
        assert answer.status == 200
        lines = list(pkt_lines(answer.read()))
    finally:
        conn.close()
    assert f"{fixture['c2']} refs/heads/main".encode() in [line.strip() for line in lines]


# -- (d) hostile modes -----------------------------------------------------------------
def test_endless_pack(server: GitServer, tmp_path: Path) -> None:
    server.hostile["evil/endless.git"] = "endless-pack"
    with NO_PROXY.open(server.url + "/evil/endless.git" + INFO_REFS, timeout=5) as answer:
        assert answer.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
        lines = list(pkt_lines(answer.read()))
    assert lines[:2] == [b"# service=git-upload-pack\n", b""]
    ref, _, caps = lines[2].partition(b"\0")
    sha = ref.split()[0]
    assert len(sha) == 40 and ref.split()[1] == b"refs/heads/main"
    assert caps.decode().split() == V0_CAPABILITIES.split()
    assert lines[3:] == [sha + b" HEAD\n", b""]

    want = pkt_line(b"want " + ref.split()[0] + b" side-band-64k\n") + b"0000"
    request = urllib.request.Request(
        server.url + "/evil/endless.git/git-upload-pack",
        data=want + pkt_line("done\n"),
        headers={"Content-Type": "application/x-git-upload-pack-request"},
    )
    with NO_PROXY.open(request, timeout=5) as answer:
        assert answer.headers["Content-Type"] == "application/x-git-upload-pack-result"
        head = answer.read(64 * 1024)
    assert len(head) == 64 * 1024
    first, second = list(pkt_lines(head))[:2]
    assert first == b"NAK\n"
    assert second.startswith(b"\x01PACK\x00\x00\x00\x02")
    wait_idle(server)  # the stream ended when the client hung up
    assert ("POST", "/evil/endless.git/git-upload-pack") in server.requests

    # dulwich's shallow fetch gets the shallow list, then pack bytes until it gives up
    received: list[bytes] = []

    class Enough(Exception):
        pass

    def pack_data(data: bytes) -> int:
        received.append(data)
        if sum(map(len, received)) >= 256 * 1024:
            raise Enough()
        return len(data)

    repo = Repo.init_bare(str(tmp_path / "endless.git"), mkdir=True)
    try:
        client, path = get_transport_and_path(server.repo_url("evil/endless.git"))
        with pytest.raises(Enough):
            client.fetch_pack(
                path.encode(),
                lambda refs, depth=None: [ObjectID(sha)],
                repo.get_graph_walker(),
                pack_data,
                depth=1,
            )
    finally:
        repo.close()
    assert b"".join(received).startswith(b"PACK\x00\x00\x00\x02")
    wait_idle(server)
    assert git("ls-remote", server.repo_url("org/models.git")).returncode == 0


def test_many_refs(server: GitServer) -> None:
    server.hostile["many.git"] = "many-refs"
    with NO_PROXY.open(server.url + "/many.git" + INFO_REFS, timeout=5) as answer:
        head = answer.read(64 * 1024)
    lines = list(pkt_lines(head))
    assert lines[0] == b"# service=git-upload-pack\n"
    assert len(lines) > 800
    assert lines[-1].endswith(b"\n") and b" refs/heads/branch-" in lines[-1]
    wait_idle(server)
    assert server.requests == [("GET", "/many.git" + INFO_REFS)]


@pytest.mark.exclusive  # a byte every 0.5 s is timed (0.3 s to 1.5 s): alone
def test_trickle(server: GitServer) -> None:
    server.hostile["slow.git"] = "trickle"
    conn = raw(server, timeout=2)
    try:
        conn.request("GET", "/slow.git" + INFO_REFS)
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.read(len(SERVICE_HEADER)) == SERVICE_HEADER
        started = time.monotonic()
        assert answer.read(1) == b"f"  # the first byte of a pkt-line that never ends
        assert 0.3 < time.monotonic() - started < 1.5
        assert conn.sock is not None
        conn.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            answer.read(1)
    finally:
        conn.close()
    wait_idle(server)


@pytest.mark.parametrize("mode", ["redirect:http://127.0.0.1:9/elsewhere.git", "status:500"])
def test_redirect_and_status(server: GitServer, mode: str) -> None:
    server.hostile["moved.git"] = mode
    conn = raw(server)
    try:
        conn.request("GET", "/moved.git" + INFO_REFS)
        answer = conn.getresponse()
        answer.read()
        if mode.startswith("redirect:"):
            assert answer.status == 302
            assert answer.headers["Location"] == mode.removeprefix("redirect:")
        else:
            assert answer.status == 500
        # the same keep-alive connection still serves a real repo
        conn.request("GET", "/org/models.git" + INFO_REFS)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    server.hostile["moved.git"] = "status:403"
    assert git("ls-remote", server.repo_url("moved.git")).returncode != 0


def test_redirect_repo_keeps_the_rest_of_the_request(
    server: GitServer, fixture: dict[str, Any]
) -> None:
    server.hostile["old/name.git"] = f"redirect-repo:{server.url}/org/models.git"
    listed = git("ls-remote", server.repo_url("old/name.git"), "refs/heads/main")
    assert listed.stdout.split()[0] == fixture["c2"], listed.stderr
    assert server.requests[:2] == [
        ("GET", "/old/name.git" + INFO_REFS),
        ("GET", "/org/models.git" + INFO_REFS),
    ]


# -- (e) stop ----------------------------------------------------------------------------
@pytest.mark.exclusive  # times stop() and takes its port again: no other worker may
def test_stop_ends_streams_and_refuses_then_restarts(fixture: dict[str, Any]) -> None:
    server = GitServer(fixture["root"]).start()
    port = server.port
    server.hostile["slow.git"] = "trickle"
    conn = raw(server, timeout=5)
    conn.request("GET", "/slow.git" + INFO_REFS)
    answer = conn.getresponse()
    assert answer.read(len(SERVICE_HEADER)) == SERVICE_HEADER
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        answer.read()  # the stream was cut, not left hanging
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)

    again = GitServer(fixture["root"], port=port).start()
    try:
        assert again.url == f"http://127.0.0.1:{port}"
        listed = git("ls-remote", again.repo_url("org/models.git"), "refs/heads/main")
        assert listed.stdout.split()[0] == fixture["c2"]
    finally:
        again.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
