"""A real Git smart-HTTP server on 127.0.0.1 for tests, and deterministic fixture repos.

Design
------
`GitServer` is a stdlib `ThreadingHTTPServer` (one thread per connection, HTTP/1.1
keep-alive) in a background thread. Every request for a repo under `root` is handed to
the REAL `git http-backend` CGI, one subprocess per request, with the CGI environment
(GIT_PROJECT_ROOT, GIT_HTTP_EXPORT_ALL, PATH_INFO, QUERY_STRING, REQUEST_METHOD,
CONTENT_TYPE, CONTENT_LENGTH, REMOTE_ADDR, REMOTE_USER, GIT_PROTOCOL from the
`Git-Protocol` header, HTTP_CONTENT_ENCODING so that http-backend inflates gzip bodies
itself). A chunked request body is decoded here and streamed to the CGI's stdin (without
CONTENT_LENGTH, so http-backend reads to EOF). The CGI's `Status:` and other headers are
passed on and its body is streamed back as it comes, chunked (or close-delimited for an
HTTP/1.0 client), so protocol v0 and v2 both work, for `git` and for dulwich alike.

Tests can switch on, per repo path prefix, `server.tokens` (HTTP Basic with any user
and the token as password, or `Bearer <token>`; else 401) and `server.hostile` modes,
for a repo that need not exist; they are generated here lazily and end when the client
hangs up or `stop()` is called:
  "endless-pack"    a valid v0 advertisement (refs/heads/main and HEAD), then for a POST
                    of git-upload-pack the shallow list (for `deepen`), NAK and side-band
                    pack data for ever (a valid pack header, then one 60 kB blob repeated)
  "many-refs"       an advertisement of 10 million refs
  "trickle"         the advertisement's service header, then 1 byte every 0.5 s for ever
  "redirect:URL"    302 to URL for every request
  "redirect-repo:BASE"  302 to BASE + the rest of the request's path and query
  "status:CODE"     that status for every request (401 with WWW-Authenticate)
`stop()` closes the listening socket, shuts every open connection and kills running
CGIs, so a test never hangs on a stream; `start()` again binds the same port.

The fixture builders make bare repos with plumbing only (`hash-object`, a temporary
index, `write-tree`, `commit-tree`, `update-ref`), with fixed names, emails and dates
(a per-repo clock kept in the repo's config advances one minute per commit) and no
system or global git config, so every SHA is the same on every run and machine.

Standalone: `python tests/gitserver.py ROOT [PORT]` builds the fixture in ROOT and
serves it until Ctrl-C.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import http.server
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote, unquote

import yaml

GIT = shutil.which("git") or "/usr/bin/git"

AUTHOR_NAME = "Fixture Bot"
AUTHOR_EMAIL = "fixture-bot@example.com"
EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z: the clock of every fixture repo starts here
ZERO_SHA = "0" * 40

# What every bare repo made here allows (fetch of any reachable commit by SHA, filters).
REPO_CONFIG = """\
[uploadpack]
\tallowReachableSHA1InWant = true
\tallowAnySHA1InWant = true
\tallowFilter = true
[http]
\tuploadpack = true
"""

V0_CAPABILITIES = (
    "multi_ack_detailed side-band-64k thin-pack ofs-delta shallow no-progress "
    "include-tag allow-reachable-sha1-in-want"
)
# Objects an "endless-pack" claims: few enough for git's index-pack to allocate its table
# (2**32-1 makes it fail at once), many enough (60 kB each: 60 GB) never to end in a test.
ENDLESS_OBJECTS = 1_000_000
MANY_REFS = 10_000_000  # refs in a "many-refs" advertisement (about 700 MB, made lazily)
TRICKLE_INTERVAL = 0.5  # seconds between two bytes of a "trickle" response
SIDEBAND_DATA_MAX = 65515  # side-band-64k: 65520-byte pkt-line less length and band
DRAIN_LIMIT = 1 << 20  # a hostile mode reads at most this much of a request body


# -- pkt-lines -----------------------------------------------------------------------
def pkt_line(data: bytes | str) -> bytes:
    """One Git pkt-line: 4 hex digits of length (including themselves), then data."""
    raw = data.encode() if isinstance(data, str) else data
    return b"%04x" % (len(raw) + 4) + raw


FLUSH_PKT = b"0000"


# -- the fixture builders ------------------------------------------------------------
def client_env(**extra: str) -> dict[str, str]:
    """An environment for `git` that reads no system or global config, never prompts and
    uses no proxy for 127.0.0.1. Inherited GIT_* variables are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def git_env(date: int | None = None, **extra: str) -> dict[str, str]:
    """`client_env()` that commits as the fixture author, at `date` (seconds since the
    epoch, UTC) when given."""
    env = client_env(
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
    )
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{date} +0000"
    env.update(extra)
    return env


def _git(
    repo: Path,
    *args: str,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> str:
    data = input.encode() if isinstance(input, str) else input
    done = subprocess.run(
        [GIT, f"--git-dir={repo}", *args],
        input=data,
        capture_output=True,
        env=env if env is not None else git_env(),
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} in {repo} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return done.stdout.decode().strip()


def _tick(repo: Path) -> int:
    """Advance the repo's fixture clock by one minute and return the new time."""
    now = _git(repo, "config", "--int", "--get", "fixture.clock", check=False)
    tick = int(now) + 60 if now else EPOCH
    _git(repo, "config", "fixture.clock", str(tick))
    return tick


def _resolve(repo: Path, ref: str) -> str | None:
    sha = _git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return sha or None


def init_bare(root: Path, name: str) -> Path:
    """Create the bare repo `root/name` (e.g. "org/models.git"): HEAD -> refs/heads/main,
    fetch of any reachable SHA and filters allowed. Returns its path."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [GIT, "init", "--bare", "-q", "--initial-branch=main", str(path)],
        check=True,
        capture_output=True,
        env=git_env(),
    )
    with open(path / "config", "a", encoding="utf-8") as config:
        config.write(REPO_CONFIG)
    return path


def commit(
    repo: Path,
    files: dict[str, str | bytes | None],
    message: str,
    *,
    branch: str = "main",
) -> str:
    """A new commit on `branch` (created if missing, as a root commit): the branch's tree
    with `files` written (`None` deletes the path). Returns the commit's SHA."""
    repo = Path(repo)
    date = _tick(repo)
    env = git_env(date)
    ref = f"refs/heads/{branch}"
    parent = _resolve(repo, ref)
    with tempfile.TemporaryDirectory(prefix="gitserver-index-") as tmp:
        ienv = {**env, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        _git(repo, "read-tree", *([parent] if parent else ["--empty"]), env=ienv)
        lines = []
        for path, content in files.items():
            if content is None:
                lines.append(f"0 {ZERO_SHA}\t{path}")
            else:
                blob = _git(repo, "hash-object", "-w", "--stdin", input=content, env=env)
                lines.append(f"100644 {blob}\t{path}")
        if lines:
            _git(
                repo,
                "update-index",
                "--replace",
                "--index-info",
                input="\n".join(lines) + "\n",
                env=ienv,
            )
        tree = _git(repo, "write-tree", env=ienv)
    parents = ["-p", parent] if parent else []
    sha = _git(repo, "commit-tree", tree, *parents, "-m", message, env=env)
    _git(repo, "update-ref", "-m", message, ref, sha, parent or ZERO_SHA, env=env)
    return sha


def tag(repo: Path, name: str, target_sha: str, *, annotated: bool = False) -> None:
    """Tag `target_sha` as refs/tags/`name`: lightweight, or an annotated tag object
    (message = name, tagger = the fixture author at the repo's next clock minute)."""
    repo = Path(repo)
    if annotated:
        _git(repo, "tag", "-a", "-m", name, name, target_sha, env=git_env(_tick(repo)))
    else:
        _git(repo, "update-ref", f"refs/tags/{name}", target_sha, ZERO_SHA)


def branch(repo: Path, name: str, sha: str) -> None:
    """Point refs/heads/`name` at `sha` (created or moved)."""
    _git(Path(repo), "update-ref", f"refs/heads/{name}", sha)


def mlem_model(name: str, extra: str = "") -> str:
    """A small MLEM model metafile; `extra` changes its artifact hash (a new version)."""
    meta = {
        "artifacts": {
            "data": {
                "hash": hashlib.md5((name + extra).encode()).hexdigest(),
                "size": 123,
                "uri": name,
            }
        },
        "object_type": "model",
        "requirements": [{"module": "sklearn"}],
    }
    return yaml.safe_dump(meta, sort_keys=True, default_flow_style=False)


def mlem_link(
    path: str,
    *,
    repo: str | None = None,
    rev: str | None = None,
    link_type: str = "model",
) -> str:
    """A MLEM link metafile (keys sorted, block style, None fields left out)."""
    link = {"link_type": link_type, "object_type": "link", "path": path, "repo": repo, "rev": rev}
    return yaml.safe_dump(
        {k: v for k, v in link.items() if v is not None}, sort_keys=True, default_flow_style=False
    )


def models_repo(root: Path) -> dict[str, Any]:
    """Build the standard fixture under `root` and return its names and SHAs.

    `org/models.git` (a MLEM repo):
      c1 (main, tags v1 and v1-annotated): .mlem/config.yaml `{}`, .mlem/model/rf.mlem v1
      c2 (main): rf.mlem v2, .mlem/link/latest.mlem -> .mlem/model/rf.mlem,
                 models/external.mlem and its index link .mlem/link/models/external.mlem
      c3 (dev, child of c2): .mlem/model/gb.mlem
    `private.git` (a MLEM repo, meant to be served with a token):
      p1 (main): .mlem/config.yaml, .mlem/model/secret.mlem
    """
    root = Path(root)
    repo = init_bare(root, "org/models.git")
    c1 = commit(
        repo,
        {".mlem/config.yaml": "{}\n", ".mlem/model/rf.mlem": mlem_model("rf", "v1")},
        "rf v1",
    )
    tag(repo, "v1", c1)
    tag(repo, "v1-annotated", c1, annotated=True)
    c2 = commit(
        repo,
        {
            ".mlem/model/rf.mlem": mlem_model("rf", "v2"),
            ".mlem/link/latest.mlem": mlem_link(".mlem/model/rf.mlem"),
            "models/external.mlem": mlem_model("external"),
            ".mlem/link/models/external.mlem": mlem_link("models/external.mlem"),
        },
        "rf v2, latest link, external model",
    )
    branch(repo, "dev", c2)
    c3 = commit(repo, {".mlem/model/gb.mlem": mlem_model("gb")}, "gb on dev", branch="dev")
    private = init_bare(root, "private.git")
    p1 = commit(
        private,
        {".mlem/config.yaml": "{}\n", ".mlem/model/secret.mlem": mlem_model("secret")},
        "secret model",
    )
    return {
        "c1": c1,
        "c2": c2,
        "c3": c3,
        "p1": p1,
        "v1-annotated": _git(repo, "rev-parse", "refs/tags/v1-annotated"),
        "root": root,
        "repo": repo,
        "private": private,
    }


# -- hostile streams -----------------------------------------------------------------
SERVICE_HEADER = pkt_line("# service=git-upload-pack\n") + FLUSH_PKT


def _advertisement_head(sha: str) -> bytes:
    """The service header, refs/heads/main with the capabilities, then HEAD (without it
    `git clone --depth`, single-branch, would want nothing)."""
    return (
        SERVICE_HEADER
        + pkt_line(f"{sha} refs/heads/main\0{V0_CAPABILITIES}\n")
        + pkt_line(f"{sha} HEAD\n")
    )


HOSTILE_SHA = hashlib.sha1(b"hostile").hexdigest()


def _endless_pack_object() -> bytes:
    """One valid blob entry of a pack: about 60 kB of random bytes, stored uncompressed."""
    data = random.Random(0).randbytes(60_000)
    size, head = len(data), [0x30 | (len(data) & 0x0F)]  # type 3 = blob
    size >>= 4
    while size:
        head[-1] |= 0x80
        head.append(size & 0x7F)
        size >>= 7
    return bytes(head) + zlib.compress(data, 0)


def _endless_pack() -> Iterator[bytes]:
    """`NAK`, then side-band channel 1 pkt-lines of a pack that claims ENDLESS_OBJECTS
    objects and repeats one blob for ever."""
    yield pkt_line("NAK\n")
    entry = _endless_pack_object()
    pending = bytearray(b"PACK" + struct.pack(">II", 2, ENDLESS_OBJECTS))
    while True:
        while len(pending) < SIDEBAND_DATA_MAX:
            pending += entry
        yield pkt_line(b"\x01" + bytes(pending[:SIDEBAND_DATA_MAX]))
        del pending[:SIDEBAND_DATA_MAX]


def _many_refs(count: int = MANY_REFS) -> Iterator[bytes]:
    """A v0 advertisement of `count` + 1 refs, 2000 lines per piece."""
    yield _advertisement_head(HOSTILE_SHA)
    batch = 2000
    for start in range(0, count, batch):
        yield b"".join(
            pkt_line(f"{i:040x} refs/heads/branch-{i:08d}\n")
            for i in range(start, min(start + batch, count))
        )
    yield FLUSH_PKT


def _trickle_tail() -> Iterator[bytes]:
    """The bytes of a never-ending pkt-line, one at a time."""
    line = pkt_line(f"{HOSTILE_SHA} refs/heads/trickle-{'x' * 65400}\n")
    while True:
        yield from (bytes([b]) for b in line)


# -- the server ----------------------------------------------------------------------
class _Stopped(Exception):
    """The server is stopping: end this response."""


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    git: GitServer


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    _chunked = False

    # -- bookkeeping
    def setup(self) -> None:
        super().setup()
        if not self.server.git._register(self):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):
                super().finish()
        finally:
            self.server.git._unregister(self)

    def handle(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, _Stopped, OSError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.git._serve(self)

    do_POST = do_GET

    # -- request body
    def body(self) -> Iterator[bytes]:
        """The request body as it arrives: Content-Length bytes, or chunked decoded."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionResetError("request body cut short")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers, then CRLF
                        pass
                    return
                while size:
                    piece = self.rfile.read(min(size, 65536))
                    if not piece:
                        raise ConnectionResetError("request body cut short")
                    size -= len(piece)
                    yield piece
                self.rfile.readline(8)  # CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    raise ConnectionResetError("request body cut short")
                left -= len(piece)
                yield piece

    def drain(self) -> None:
        """Read the request body and throw it away."""
        self.read_body()

    def read_body(self) -> bytes:
        """The request body, gunzipped if it says so, up to DRAIN_LIMIT bytes (past that,
        the rest is left unread and the connection closed after the response)."""
        pieces, seen = [], 0
        for piece in self.body():
            pieces.append(piece)
            seen += len(piece)
            if seen > DRAIN_LIMIT:
                self.close_connection = True
                break
        data = b"".join(pieces)
        if self.headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            with contextlib.suppress(OSError, EOFError, zlib.error):
                data = zlib.decompressobj(wbits=31).decompress(data, DRAIN_LIMIT)
        return data

    # -- responses
    def plain(
        self,
        status: int,
        body: str | bytes = "",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        """A whole response with Content-Length."""
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def begin_stream(
        self, status: int, reason: str | None, headers: Iterable[tuple[str, str]]
    ) -> None:
        """Send the status and headers of a body of unknown length: chunked for an
        HTTP/1.1 client, else close-delimited."""
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self._chunked = self.request_version == "HTTP/1.1"
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def stream(self, data: bytes) -> None:
        if self.server.git._stopping.is_set():
            raise _Stopped()
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def idle(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.1))
            if self.server.git._stopping.is_set():
                return False
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return False  # EOF: the client closed its end
                except OSError:
                    return False
                time.sleep(min(left, 0.05))  # bytes sent ahead: no busy wait on them
        return True

    def end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")


class GitServer:
    """Serve every bare repo under `root` over Git smart HTTP (real `git http-backend`).

    tokens: repo path ("private.git") -> token it needs (Basic with any user, or Bearer).
    hostile: repo path prefix -> mode, for tests to switch at any time (see module doc).
    requests: (method, path with query) of every request, in order; `reset()` clears it.
    request_headers: the headers of each request in `requests`, same order (a dict each).
    active_requests: how many requests are being answered at the moment.
    backend_errors: (path, stderr) of every http-backend run that wrote to stderr.
    """

    def __init__(self, root: Path, *, tokens: dict[str, str] | None = None, port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.tokens: dict[str, str] = dict(tokens or {})
        self.hostile: dict[str, str] = {}
        self.port = port
        self.backend_errors: list[tuple[str, str]] = []
        self._requests: list[tuple[str, str]] = []
        self._headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._handlers: dict[_Handler, threading.Thread] = {}
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._active = 0

    # -- life cycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, name: str, *, token: str | None = None, user: str = "x") -> str:
        """The URL of the repo `name`, with `user:token@` when a token is given."""
        auth = f"{quote(user, safe='')}:{quote(token, safe='')}@" if token is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name.strip('/')}"

    def start(self) -> GitServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
        httpd.git = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket, end every open connection and running http-backend,
        and wait (a few seconds at most) for the connection threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._lock:
            self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            handlers = dict(self._handlers)
            procs = set(self._procs)
        for handler in handlers:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for thread in handlers.values():
            thread.join(5)

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request log
    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._headers)

    @property
    def active_requests(self) -> int:
        """How many requests are being answered right now (a stream the client hung up
        on ends at the server's next write)."""
        with self._lock:
            return self._active

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._headers.clear()

    def _register(self, handler: _Handler) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._handlers[handler] = threading.current_thread()
            return True

    def _unregister(self, handler: _Handler) -> None:
        with self._lock:
            self._handlers.pop(handler, None)

    # -- dispatch
    @staticmethod
    def _match(table: dict[str, str], path: str) -> tuple[str, str] | None:
        """(key, value) of the longest key that is `path` or a folder prefix of it."""
        best: tuple[str, str] | None = None
        for key, value in list(table.items()):
            key = key.strip("/")
            covers = path == key or path.startswith(key + "/") or key == ""
            if covers and (best is None or len(key) > len(best[0])):
                best = (key, value)
        return best

    def _serve(self, handler: _Handler) -> None:
        with self._lock:
            self._requests.append((handler.command, handler.path))
            self._headers.append(dict(handler.headers.items()))
            self._active += 1
        try:
            self._dispatch(handler)
        finally:
            with self._lock:
                self._active -= 1

    def _dispatch(self, handler: _Handler) -> None:
        raw_path, _, query = handler.path.partition("?")
        path = unquote(raw_path)
        key = path.strip("/")
        user = ""
        needs = self._match(self.tokens, key)
        if needs is not None:
            user_or_none = self._authorized(handler, needs[1])
            if user_or_none is None:
                handler.drain()
                handler.plain(
                    401, "authentication required\n", [("WWW-Authenticate", 'Basic realm="git"')]
                )
                return
            user = user_or_none
        hostile = self._match(self.hostile, key)
        if hostile is not None:
            self._hostile(handler, hostile[1], "/" + hostile[0], path, query)
        else:
            self._cgi(handler, path, query, user)

    @staticmethod
    def _authorized(handler: _Handler, token: str) -> str | None:
        """The user that the request authenticates as with `token`, or None."""
        scheme, _, credentials = handler.headers.get("Authorization", "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            ok = hmac.compare_digest(credentials.encode(), token.encode())
            return "bearer" if ok else None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            if sep and hmac.compare_digest(password.encode(), token.encode()):
                return user or "token"
        return None

    # -- the real thing
    def _cgi(self, handler: _Handler, path: str, query: str, user: str) -> None:
        headers = handler.headers
        env = client_env(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL=handler.request_version,
            SERVER_NAME="127.0.0.1",
            SERVER_PORT=str(self.port),
            REQUEST_METHOD=handler.command,
            PATH_INFO=path,
            QUERY_STRING=query,
            CONTENT_TYPE=headers.get("Content-Type", ""),
            REMOTE_ADDR=handler.client_address[0],
            # A repo owned by someone else (another uid in CI) is served all the same.
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="safe.directory",
            GIT_CONFIG_VALUE_0="*",
        )
        if user:
            env["REMOTE_USER"] = user
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if headers.get("Content-Length") and not chunked:
            env["CONTENT_LENGTH"] = headers["Content-Length"]
        if headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
        if headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = headers["Git-Protocol"]

        proc = subprocess.Popen(
            [GIT, "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.root,
        )
        with self._lock:
            self._procs.add(proc)
        stderr: list[bytes] = []
        feed_error: list[BaseException] = []
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, err = proc.stdin, proc.stdout, proc.stderr

        def feed() -> None:
            try:
                for piece in handler.body():
                    stdin.write(piece)
            except (BrokenPipeError, ValueError):
                pass  # the backend stopped reading: its answer says why
            except OSError as exc:
                feed_error.append(exc)
                with contextlib.suppress(OSError):
                    proc.kill()
            finally:
                with contextlib.suppress(OSError):
                    stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        drainer = threading.Thread(target=lambda: stderr.append(err.read()), daemon=True)
        feeder.start()
        drainer.start()
        try:
            self._relay(handler, stdout)
        finally:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            feeder.join(5)
            drainer.join(5)
            stdout.close()
            err.close()
            with self._lock:
                self._procs.discard(proc)
                text = b"".join(stderr).decode(errors="replace").strip()
                if text:
                    self.backend_errors.append((path, text))
            if feed_error:
                handler.close_connection = True

    @staticmethod
    def _relay(handler: _Handler, stdout: IO[bytes]) -> None:
        """Pass the CGI's headers and body on to the client, as they come."""
        status, reason = 200, "OK"
        headers: list[tuple[str, str]] = []
        length: int | None = None
        while True:
            line = stdout.readline(65536)
            if not line:
                if not headers:
                    handler.close_connection = True
                    handler.plain(502, "git http-backend gave no answer\n")
                    return
                break
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":
                code, _, text = value.partition(" ")
                status, reason = int(code), text or "Status"
            elif name.lower() == "content-length":
                length = int(value)
            else:
                headers.append((name, value))
        read = stdout.read1 if hasattr(stdout, "read1") else stdout.read
        if length is not None:
            handler.send_response(status, reason)
            for name, value in headers:
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(length))
            handler.end_headers()
            left = length
            while left > 0:
                piece = read(min(left, 65536))
                if not piece:
                    handler.close_connection = True  # cut short: the client must see it
                    return
                handler.wfile.write(piece)
                left -= len(piece)
            return
        handler.begin_stream(status, reason, headers)
        while piece := read(65536):
            handler.stream(piece)
        handler.end_stream()

    # -- the hostile ones
    def _hostile(self, handler: _Handler, mode: str, prefix: str, path: str, query: str) -> None:
        request = handler.read_body()
        kind, _, arg = mode.partition(":")
        if kind in ("redirect", "redirect-repo"):
            where = arg
            if kind == "redirect-repo":  # the same request, under another base URL
                where = arg.rstrip("/") + path[len(prefix) :] + (f"?{query}" if query else "")
            handler.plain(302, "", [("Location", where)])
            return
        if kind == "status":
            code = int(arg)
            extra = [("WWW-Authenticate", 'Basic realm="git"')] if code == 401 else []
            handler.plain(code, f"hostile status {code}\n", extra)
            return
        refs = handler.command == "GET" and path.endswith("/info/refs")
        pack = handler.command == "POST" and path.endswith("/git-upload-pack")
        advert = ("Content-Type", "application/x-git-upload-pack-advertisement")
        result = ("Content-Type", "application/x-git-upload-pack-result")
        nocache = ("Cache-Control", "no-cache, max-age=0, must-revalidate")
        body: Iterable[bytes]
        if kind == "endless-pack" and refs:
            data = _advertisement_head(HOSTILE_SHA) + FLUSH_PKT
            handler.plain(200, data, [nocache], content_type=advert[1])
            return
        if kind == "endless-pack" and pack:
            # As upload-pack answers a stateless v0 request: the shallow list for a
            # `deepen`, a NAK for `have`s, and once the client says `done` a NAK and the
            # pack: endless here.
            handler.begin_stream(200, None, [result, nocache])
            if b"deepen" in request:
                handler.stream(pkt_line(f"shallow {HOSTILE_SHA}\n") + FLUSH_PKT)
            if b"0009done\n" not in request:
                handler.stream(pkt_line("NAK\n") if b"have " in request else b"")
                handler.end_stream()
                return
            body = _endless_pack()
        elif kind == "many-refs" and refs:
            handler.begin_stream(200, None, [advert, nocache])
            body = _many_refs()
        elif kind == "trickle" and (refs or pack):
            handler.begin_stream(200, None, [advert if refs else result, nocache])
            handler.stream(SERVICE_HEADER if refs else b"")
            for byte in _trickle_tail():
                if not handler.idle(TRICKLE_INTERVAL):
                    raise _Stopped()
                handler.stream(byte)
            return
        elif kind in ("endless-pack", "many-refs", "trickle"):
            handler.plain(404, f"hostile {kind}: nothing at {path}\n")
            return
        else:
            handler.plain(500, f"unknown hostile mode {mode!r}\n")
            return
        handler.close_connection = True
        for piece in body:
            handler.stream(piece)
        handler.end_stream()


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python tests/gitserver.py ROOT [PORT]", file=sys.stderr)
        return 2
    root = Path(argv[0]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = "s3cret"

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, and SIGTERM, stop it even when started in the background (SIGINT ignored)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    made = models_repo(root)
    server = GitServer(root, tokens={"private.git": token}, port=int(argv[1]) if argv[1:] else 0)
    with server:
        print(f"serving {root} at {server.url}")
        print(f"  {server.repo_url('org/models.git')}")
        for name in ("c1", "c2", "c3"):
            print(f"    {name} {made[name]}")
        print(f"  {server.repo_url('private.git', token=token)}  (token {token!r})")
        print(f"    p1 {made['p1']}")
        print("Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
