"""Review of issue 11 (remote git): the attack cases of a hostile review (they failed on
d801807, the first version; fixed since).

Each test is one finding of the review; its docstring says what went wrong. They use the
real git server of tests/gitserver.py (`git_world`), or, where a server must lie in ways
`git http-backend` never does (crafted refs, a crafted pack), `Crafted` below: a minimal
smart-HTTP (protocol v0) server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GitWorld
from gitserver import (
    FLUSH_PKT,
    SERVICE_HEADER,
    V0_CAPABILITIES,
    commit,
    init_bare,
    mlem_link,
    mlem_model,
    pkt_line,
)

from mlemremote import link, load_meta
from mlemremote.api import configured
from mlemremote.core.errors import (
    GitRemoteError,
    HostNotAllowedError,
    InvalidLinkError,
    MetafileTooLargeError,
    RevisionNotFound,
)

pytestmark = pytest.mark.backends("git")

RF = ".mlem/model/rf.mlem"
ROOT = Path(__file__).resolve().parent.parent


def version_of(obj: Any) -> str:
    digest = obj.artifacts["data"]["hash"]
    for name in ("rf", "gb", "evil"):
        for extra in ("", "v1", "v2"):
            if hashlib.md5((name + extra).encode()).hexdigest() == digest:
                return f"{name}/{extra}" if extra else name
    return digest


def own_repo(world: GitWorld) -> tuple[Path, str, str]:
    name = f"review/{uuid.uuid4().hex[:8]}.git"
    repo = init_bare(world.root, name)
    first = commit(repo, {".mlem/config.yaml": "{}\n", RF: mlem_model("rf", "v1")}, "rf v1")
    return repo, world.url(name), first


# -- a server that lies ---------------------------------------------------------------------
def _obj_sha(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()


def _entry(kind: int, size: int, compressed: bytes) -> bytes:
    head = [(kind << 4) | (size & 0x0F)]
    size >>= 4
    while size:
        head[-1] |= 0x80
        head.append(size & 0x7F)
        size >>= 7
    return bytes(head) + compressed


def bomb_pack(inflated: int) -> tuple[bytes, str]:
    """A valid pack: commit -> tree -> one blob of `inflated` zero bytes (about
    inflated/1000 bytes on the wire). Returns the pack and the commit's SHA."""
    deflate, digest, chunk, left, parts = zlib.compressobj(9), None, bytes(1 << 20), inflated, []
    digest = hashlib.sha1(b"blob %d\0" % inflated)
    while left:
        piece = chunk[: min(left, len(chunk))]
        digest.update(piece)
        parts.append(deflate.compress(piece))
        left -= len(piece)
    parts.append(deflate.flush())
    tree = b"100644 big.mlem\0" + bytes.fromhex(digest.hexdigest())
    body = (
        f"tree {_obj_sha(b'tree', tree)}\nauthor a <a@a> 1700000000 +0000\n"
        "committer a <a@a> 1700000000 +0000\n\nbomb\n"
    ).encode()
    pack = b"PACK" + struct.pack(">II", 2, 3)
    pack += _entry(1, len(body), zlib.compress(body))
    pack += _entry(2, len(tree), zlib.compress(tree))
    pack += _entry(3, inflated, b"".join(parts))
    return pack + hashlib.sha1(pack).digest(), _obj_sha(b"commit", body)


class Crafted:
    """Advertises `refs` ((value, name) pairs: the value is sent as the ref's SHA, as is)
    and answers every upload-pack request with `pack`."""

    def __init__(self, refs: list[tuple[str, str]], pack: bytes = b"") -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, kind: str, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"application/x-git-upload-pack-{kind}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                lines = [SERVICE_HEADER]
                for index, (sha, name) in enumerate(refs):
                    caps = f"\0{V0_CAPABILITIES}" if index == 0 else ""
                    lines.append(pkt_line(f"{sha} {name}{caps}\n"))
                self.answer("advertisement", b"".join(lines) + FLUSH_PKT)

            def do_POST(self) -> None:
                request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out = b""
                if b"deepen" in request:
                    for line in request.split(b"\n"):
                        if b"want " in line:
                            out += pkt_line(b"shallow " + line.split(b"want ")[1][:40] + b"\n")
                    out += FLUSH_PKT
                out += pkt_line("NAK\n")
                for i in range(0, len(outer.pack), 65515):
                    out += pkt_line(b"\x01" + outer.pack[i : i + 65515])
                self.answer("result", out + FLUSH_PKT)

        self.pack = pack
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Crafted:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def raw_server(answer: bytes) -> socket.socket:
    """A socket on 127.0.0.1 that answers every connection with `answer` (raw bytes) and
    closes it; closing the returned listener ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def run_python(code: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- 1. time budget: bulk calls are unbounded ----------------------------------------------
@pytest.mark.parametrize("call", ["load_many(['rf'], URL, rev='main')", "check(URL, rev='main')"])
def test_a_trickling_server_is_bounded_in_bulk_calls_too(git_world: GitWorld, call: str) -> None:
    """load_meta ends after retry_max_seconds; load_many/check (and the CLI's ls/check)
    never end: outside a call budget each 64 kB read gets a whole budget of its own, and a
    trickle sends a byte every 0.5 s. (Observed: still running after 60 s with budget 2.)"""
    git_world.server.hostile["review/trickle.git"] = "trickle"
    code = f"""
        from mlemremote import load_many, check
        URL = {git_world.url("review/trickle.git")!r}
        try:
            {call}
        except Exception as exc:
            print(type(exc).__name__)
    """
    started = time.monotonic()
    try:
        run_python(code, 30, MLEMREMOTE_RETRY_MAX_SECONDS="2")
    except subprocess.TimeoutExpired:
        pytest.fail(f"{call} against a trickling server still runs after 30 s (budget: 2 s)")
    assert time.monotonic() - started < 30


# -- 2. memory and time: a pack bomb ---------------------------------------------------------
@pytest.mark.exclusive  # a memory high-water mark and a time bound: alone
def test_a_pack_that_inflates_hugely_is_bounded() -> None:
    """A 260 kB pack (1/1000 of git_max_transfer_bytes) whose one blob inflates to
    256 MiB: dulwich inflates every object to index the pack, in memory, after the
    transfer (so neither git_max_transfer_bytes nor the time budget applies). Observed:
    1 MB pack -> 1.1 GB RSS and 25 s; with retry_max_seconds=2, 12 s before the
    TimeBudgetError. A 256 MB pack (the default cap) would need ~256 GB."""
    pack, sha = bomb_pack(256 << 20)
    peak_mb, seconds = load_from_crafted(pack, sha, "big")
    assert peak_mb < 200, f"max RSS {peak_mb} MB for a {len(pack)}-byte pack"
    assert seconds < 5, f"{seconds} s with a 2 s budget"


def load_from_crafted(pack: bytes, sha: str, name: str) -> tuple[int, float]:
    """`load_meta(name)` from a `Crafted` server with `pack` at main, in a fresh process
    with a 2 s budget: its peak memory (MB; VmHWM, not ru_maxrss, which counts the
    forking pytest's) and the seconds the call took."""
    with Crafted([(sha, "refs/heads/main"), (sha, "HEAD")], pack) as server:
        done = run_python(
            f"""
            import time
            from mlemremote import load_meta
            start = time.monotonic()
            try:
                load_meta({name!r}, repo={server.url + "/crafted.git"!r}, rev="main")
            except Exception as exc:
                print(type(exc).__name__)
            seconds = round(time.monotonic() - start, 1)
            hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
            print(int(hwm.split()[1]) // 1024, seconds)
            """,
            120,
            MLEMREMOTE_RETRY_MAX_SECONDS="2",
        )
    peak, seconds = done.stdout.split()[-2:]
    return int(peak), float(seconds)


# -- 3. the cache keeps what the size cap left out -------------------------------------------
def test_raising_the_metafile_cap_reads_a_blob_the_first_fetch_filtered(
    git_world: GitWorld,
) -> None:
    """The fetch asks the server to leave out blobs over max_metafile_bytes; the commit
    is then cached for good without them. Raising the cap (or another process with a
    larger cap sharing the cache) still gets MetafileTooLargeError, which even claims
    the 100 kB file 'has more than 1048576 bytes'."""
    repo, url, _ = own_repo(git_world)
    big = "object_type: model\nartifacts: {}\n" + "#" * 100_000 + "\n"
    commit(repo, {".mlem/model/big.mlem": big}, "big")
    with configured(max_metafile_bytes=64 * 1024), pytest.raises(MetafileTooLargeError):
        load_meta("big", repo=url, rev="main")
    with configured(max_metafile_bytes=1 << 20):
        assert load_meta("big", repo=url, rev="main").object_type == "model"


# -- 4. an abbreviated SHA is taken from any advertised ref ------------------------------------
def test_an_abbreviated_sha_cannot_be_taken_over_by_a_pull_request_ref(
    git_world: GitWorld,
) -> None:
    """`rev: <abbreviated sha>` of a commit that is not a tip is refused today; as soon as
    anyone advertises a tip with that prefix (GitHub advertises refs/pull/N/head, which
    any outsider creates by opening a pull request; a 7-hex prefix is 2**28 tries), the
    outsider's commit is loaded instead, silently, and `pin=True` records its full SHA.
    (4 hex digits here to keep the test fast; the code accepts 4..39.)"""
    repo, url, first = own_repo(git_world)
    commit(repo, {RF: mlem_model("rf", "v2")}, "rf v2")
    short = first[:4]
    with pytest.raises(RevisionNotFound):
        load_meta("rf", repo=url, rev=short)

    def git(*args: str, data: bytes | None = None) -> str:
        return (
            subprocess.run(
                ["git", "--git-dir", str(repo), *args], input=data, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )

    blob = git("hash-object", "-w", "--stdin", data=mlem_model("evil").encode())
    model = git("mktree", data=f"100644 blob {blob}\trf.mlem\n".encode())
    dot_mlem = git("mktree", data=f"040000 tree {model}\tmodel\n".encode())
    top = git("mktree", data=f"040000 tree {dot_mlem}\t.mlem\n".encode())
    head = f"tree {top}\nauthor a <a@a> 1700000000 +0000\ncommitter a <a@a> 1700000000 +0000\n\n"
    for nonce in range(10_000_000):
        body = f"{head}{nonce}\n".encode()
        if hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest().startswith(short):
            break
    evil = git("hash-object", "-t", "commit", "-w", "--stdin", data=body)
    git("update-ref", "refs/pull/1/head", evil)
    try:
        got = version_of(load_meta("rf", repo=url, rev=short))
    except RevisionNotFound:
        return  # refused: fine
    assert got != "evil", "an outsider's pull-request commit was loaded for an abbreviated SHA"


# -- 5. insteadof prefixes reach servers the user never named --------------------------------
def test_an_insteadof_rewrite_cannot_move_a_link_to_another_port(
    git_world: GitWorld, tmp_path: Path, no_user_config: Path
) -> None:
    """With `url: http://127.0.0.1` `insteadof: https://github.com` (no trailing slashes,
    as Git users also write them), a link to `https://github.com:<port>/...` counts as
    "named by a user remote" (plain startswith) and is rewritten to
    `http://127.0.0.1:<port>/...`: a server (port) the user never named, reached
    without link_schemes/allowed_hosts. Same with `https://github.com.attacker.net/...`
    -> `<url>.attacker.net`."""
    no_user_config.write_text(
        yaml.safe_dump(
            {"remotes": {"m": {"url": "http://127.0.0.1", "insteadof": "https://github.com"}}}
        )
    )
    port = git_world.server.port
    (tmp_path / "l.mlem").write_text(
        mlem_link(RF, repo=f"https://github.com:{port}/org/models.git", rev="main")
    )
    git_world.server.reset()
    with pytest.raises((InvalidLinkError, HostNotAllowedError)):
        load_meta(str(tmp_path / "l"))
    assert git_world.server.requests == []


# -- 6. ref values from the server become cache paths ----------------------------------------
def test_a_servers_ref_values_are_never_used_as_paths(tmp_path: Path, fresh_cache: Path) -> None:
    """dulwich does not check that an advertised SHA is 40 hex digits; `commit_for`
    returns it and `cached_commit` joins it to the cache folder: `../../../outside`
    touches (os.utime) and opens, with pygit2, a folder outside the cache; the errors
    are StorageError(FileNotFoundError) / UnexpectedError(GitError), not GitRemoteError."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "HEAD").write_text("ref: refs/heads/main\n")
    os.utime(outside, (1, 1))
    value = "../../../outside"  # cache/git/<key>/../../../outside == tmp_path/outside
    errors = []
    with Crafted([(value, "refs/heads/main"), (value, "HEAD")]) as server:
        for rev in ("main", "HEAD"):  # (the second finds the key folder made by the first)
            try:
                load_meta("rf", repo=server.url + "/x.git", rev=rev)
            except Exception as exc:
                errors.append(exc)
    # (values that are not commit ids are dropped: the refs are not there at all)
    assert len(errors) == 2 and all(isinstance(e, RevisionNotFound) for e in errors), errors
    assert outside.stat().st_mtime == 1, "a folder outside the cache was used as a cache entry"


# -- 7. foreign errors from the transfer -----------------------------------------------------
def test_a_broken_transfer_is_a_git_error_naming_the_repo(tmp_path: Path) -> None:
    """A connection cut mid-body (aiohttp ClientPayloadError, raised from
    `_Transfer.read`) and a truncated pack (zlib.error from dulwich) escape `_client`'s
    mapping: the caller gets UnexpectedError ('unexpected error in load_meta: EOF before
    end of zlib stream'), naming neither the repository nor the revision."""
    pack, sha = bomb_pack(1000)
    with (
        Crafted([(sha, "refs/heads/main"), (sha, "HEAD")], pack[:40]) as server,
        pytest.raises(GitRemoteError, match=r"cut\.git"),
    ):
        load_meta("big", repo=server.url + "/cut.git", rev="main")

    listener = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement"
        b"\r\nContent-Length: 100000\r\n\r\n001e# service=git-upload-pack\n0000"
    )
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/reset.git"
        with pytest.raises(GitRemoteError, match=r"reset\.git.*'main'"):
            load_meta("rf", repo=url, rev="main")
    finally:
        listener.close()


# -- 8. pin=True with rev= on a LOCAL git repository -------------------------------------------
def test_pin_with_rev_works_for_a_local_git_repo(git_world: GitWorld, tmp_path: Path) -> None:
    """Issue 11 allows pin=True with rev=; for a remote repo it works, for a local
    working tree or bare repo it raises RevisionNotSupportedError ('git revision main
    keeps no versions'): pinned_location -> at_revision(loc, sha) on a location whose
    git_root is local falls into `store_for(loc).check_versions(loc)`."""
    work = tmp_path / "work"
    subprocess.run(
        ["git", "clone", "-q", str(git_world.root / "org/models.git"), str(work)],
        check=True,
        capture_output=True,
    )
    link("rf", source_repo=str(work), rev="main", pin=True, target=str(tmp_path / "p"))
    written = yaml.safe_load((tmp_path / "p.mlem").read_text())
    assert written["rev"] == git_world.shas["c2"]


# -- 9. MLEM's repo=.../tree/<ref> -------------------------------------------------------------
def test_a_github_tree_url_as_repo_names_the_revision(
    git_world: GitWorld, no_user_config: Path
) -> None:
    """MLEM's GithubResolver reads `repo="https://github.com/org/repo/tree/<ref>"`; here
    `parse_git_url(whole=True)` keeps `tree/v1` as a folder inside the repo at HEAD:
    MlemRootNotFound ('.../tree/v1/.mlem/config.yaml is missing')."""
    no_user_config.write_text(
        yaml.safe_dump(
            {
                "remotes": {
                    "m": {"url": git_world.server.url + "/", "insteadof": "https://github.com/"}
                }
            }
        )
    )
    model = load_meta("rf", repo="https://github.com/org/models/tree/v1")
    assert version_of(model) == "rf/v1"


# -- 10. credentials in a repr ------------------------------------------------------------------
def test_a_remote_repos_repr_does_not_carry_its_credentials(
    no_user_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RemoteRepo is a plain dataclass: its repr (frame locals in Sentry, pytest
    --showlocals, traceback capture_locals) shows `auth='Basic eC1hY2Nlc3Mt...'`, the
    token in base64; the redactor does not know it either."""
    from mlemremote._redact import redact
    from mlemremote._remotes import Remotes
    from mlemremote._stores import git

    monkeypatch.setenv("REVIEW_TOKEN", "supersecret")
    no_user_config.write_text(
        yaml.safe_dump(
            {
                "remotes": {
                    "g": {"url": "https://git.example.com/", "env": {"token": "REVIEW_TOKEN"}}
                }
            }
        )
    )
    remote = git.remote_repo("https://git.example.com/org/x.git", Remotes())
    assert remote.auth is not None
    assert remote.auth not in redact(repr(remote))
