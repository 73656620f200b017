"""Git revisions, read-only: a repository on local disk, or a remote one fetched once.

**Reading** (`GitRevisionStore`) is the same for both: a blob of one commit's tree, read
with pygit2 (fsspec's `GitFileSystem`); its size comes from the object header, so a large
blob is refused before it is inflated.

**Remote repositories** (`remote_revision`): smart HTTP(S) servers (`https://host/org/repo`,
with or without `.git`), and `file://` bare repositories, through dulwich:

- **Which commit.** A 40-hex revision is taken as the commit itself. A branch, a tag
  (peeled to its commit) or `HEAD` is looked up in the server's ref list: one request
  (`list_refs`; the caller keeps one answer per call). A branch and a tag of one name on
  different commits is refused as ambiguous, not guessed.
- **The cache.** A commit is fetched once, shallow (that commit only, `depth=1`, blobs
  over the metafile cap left out where the server can filter), into
  `<cache>/git/<hash of the repo URL>/<commit>`: a bare repository, written in a
  temporary folder and renamed into place, so that concurrent processes never see half
  of one (the first rename wins; the others drop their copy). Afterwards that commit is
  read with no request. When the cache outgrows `git_cache_max_bytes`, the entries used
  least recently (and not in the last minute) are removed. `<cache>` is
  `$MLEMREMOTE_CACHE_DIR`, else `$XDG_CACHE_HOME/mlemremote`, else `~/.cache/mlemremote`.
- **Where and how.** The URL is rewritten by the user's remotes (`insteadof`, as Git's
  `url.<base>.insteadOf`), and the remote for the URL fetched gives the credentials
  (`username`, and `password` or `token` through `env:`): sent only to that origin, never
  written or shown.
- **Bounds.** Every HTTP exchange goes through the http store's connector (the address
  policy, checked after DNS resolution; redirects only within the origin), and is
  bounded by one deadline (the call's time budget) and by `git_max_transfer_bytes` for
  what one listing or fetch may receive. A fetched pack is walked (`check_pack`) before
  dulwich indexes it, which inflates every object in memory with no deadline: object
  count, each object's and each delta result's inflated size, and their total are
  bounded, so a few hundred bytes cannot become gigabytes. A fetched commit must come
  with every tree of its snapshot before it is cached. Repository URLs with `.`/`..`
  segments are refused (the client would resolve them past the prefix a remote or a
  policy was matched on). A server that is not a smart git server (a web page, the
  "dumb" protocol) is refused rather than crawled.
- **Errors** name the repository URL (without credentials) and the revision:
  `GitRepoNotFoundError`, `GitAuthError`, `GitUnreachableError`,
  `GitTransferLimitError`, `RevisionNotFound`, `TimeBudgetError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from mlemremote import _policy
from mlemremote._redact import remember
from mlemremote._remotes import Remotes
from mlemremote._settings import current as current_settings
from mlemremote._stores.base import (
    Blob,
    Body,
    Store,
    Where,
    changed,
    content_token,
    remaining,
    too_large,
)
from mlemremote.core.errors import (
    GitAuthError,
    GitRemoteError,
    GitRepoNotFoundError,
    GitTransferLimitError,
    GitUnreachableError,
    InvalidLinkError,
    MlemError,
    NotAFileError,
    RemoteConfigError,
    RemoteGitNotSupportedError,
    RevisionNotFound,
    TimeBudgetError,
)

if TYPE_CHECKING:
    import aiohttp
    from fsspec.implementations.git import GitFileSystem

T = TypeVar("T")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")
_GITHUB_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,100}$")
CACHE_ENV = "MLEMREMOTE_CACHE_DIR"
RECENT_USE_SECONDS = 60.0  # a cache entry used this recently is never evicted
STALE_SECONDS = 3600.0  # a temporary folder this old was left by a fetch that died
GIT_OPTIONS = frozenset({"username", "password", "token"})
CHUNK = 1 << 16  # what one read from the network (or the pack) asks for
FILTER_BYTES = 4 << 20  # blobs over this (or the cap) are left out of a fetch
FILTER_FILE = "mlemremote-filter"  # in a cache entry: the filter its fetch used
MAX_PACK_OBJECTS = 100_000  # dulwich indexes ~10,000 objects a second, with no deadline


class GitRevisionStore(Store):
    kind = "git revision"

    def describe(self, loc: Where) -> str:
        return f"git revision {loc.rev or 'HEAD'}"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        # The blob's size comes from its object header: a large blob is never inflated
        # (pygit2's `Blob.size`, which fsspec's `info` asks for, inflates all of it).
        import pygit2

        repo = loc.fs.repo
        found = _entry(loc)
        if not isinstance(found, pygit2.Blob):
            raise IsADirectoryError(loc.fullpath)
        try:
            _, size = repo.odb.read_header(found.id)
        except KeyError:
            # In the tree but not fetched: the server left it out as larger than the
            # filter the fetch used (a remote repo's cache entry records it).
            raise _left_out(loc, repo.path, limit) from None
        if size > limit:
            raise too_large(loc, limit, size)
        data = bytes(found.data)
        return Blob(data, content_token(data), loc.rev)

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # The blob of this revision, streamed from the object database. A symlink (git
        # stores its target as a blob), a folder or a submodule is not a file.
        import pygit2

        repo = loc.fs.repo
        found = _entry(loc)
        mode = getattr(found, "filemode", None)
        if not isinstance(found, pygit2.Blob) or mode == pygit2.enums.FileMode.LINK:
            kind = "a symlink" if isinstance(found, pygit2.Blob) else "not a file"
            raise NotAFileError(f"{loc} is {kind} in git revision {loc.rev or 'HEAD'}")
        if token is not None and token != str(found.id):
            raise changed(loc)
        try:
            _, size = repo.odb.read_header(found.id)
        except KeyError:
            raise GitRemoteError(
                f"{loc}: its blob was left out when this commit was fetched (a remote git "
                f"repository's blobs over {filter_bytes()} bytes are not fetched); read it "
                "from a clone or a bucket"
            ) from None
        return _BlobBody(pygit2.BlobIO(found), size, str(found.id), offset)

    def listing(self, loc: Where) -> list[str]:
        # From the tree alone: fsspec's `find` asks each blob's size, which inflates it
        # (and fails for a blob a filtered fetch left out).
        import pygit2

        commit = commit_object(loc.fs.repo, loc.fs.ref, str(loc))
        try:
            top = commit.tree[loc.fullpath] if loc.fullpath else commit.tree
        except KeyError:
            return []
        if not isinstance(top, pygit2.Tree):
            return [loc.fullpath]
        found: list[str] = []
        folders = [(loc.fullpath, top)]
        while folders:
            prefix, tree = folders.pop()
            for entry in tree:
                path = f"{prefix}/{entry.name}" if prefix else str(entry.name)
                if entry.type_str == "tree":
                    folders.append((path, loc.fs.repo[entry.id]))
                elif entry.type_str == "blob":
                    found.append(path)
        return found

    def entries(self, loc: Where) -> list[str]:
        folder = loc.fullpath.rstrip("/")
        depth = folder.count("/") + 1 if folder else 0
        return sorted({"/".join(p.split("/")[: depth + 1]) for p in self.listing(loc)})


def _entry(loc: Where) -> Any:
    """What the revision's tree holds at `loc` (`FileNotFoundError` when nothing)."""
    commit = commit_object(loc.fs.repo, loc.fs.ref, str(loc))
    try:
        return commit.tree[loc.fullpath] if loc.fullpath else commit.tree
    except KeyError:
        raise FileNotFoundError(loc.fullpath) from None


class _BlobBody:
    """A git blob, streamed (pygit2's `BlobIO`), from byte `offset`."""

    def __init__(self, stream: Any, size: int, token: str, offset: int) -> None:
        self._stream, self.size, self.token, self.start = stream, size, token, offset
        while offset > 0:  # (a blob stream cannot seek: the bytes before are skipped)
            skipped = len(stream.read(min(offset, CHUNK)))
            if not skipped:
                break
            offset -= skipped

    def read(self, most: int) -> bytes:
        data: bytes = self._stream.read(most)
        return data

    def close(self) -> None:
        self._stream.close()


def commit_object(repo: Any, ref: str, where: str) -> Any:
    """The commit `ref` (a branch, tag, commit or tag object id) names in pygit2 `repo`."""
    import pygit2

    try:
        return repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
        raise RevisionNotFound(f"{where}: {ref!r:.100} names no commit ({exc})") from None


def _check_complete(repo: Any, ref: str, where: str) -> None:
    """A fetched commit has every tree of its snapshot (blobs may have been left out by
    the filter): a missing folder would read as a missing file, not as an error."""
    folders = [commit_object(repo, ref, where).tree]
    while folders:
        for entry in folders.pop():
            if entry.type_str == "tree":
                found = repo.get(entry.id)
                if found is None:
                    raise GitRemoteError(f"{where}: the server sent an incomplete commit")
                folders.append(found)


def _left_out(loc: Where, gitdir: str, limit: int) -> MlemError:
    try:
        over = int(Path(gitdir, FILTER_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return GitRemoteError(f"{loc}: the blob is missing from the git repository")
    if limit < over:  # larger than the filter, so than the cap
        return too_large(loc, limit)
    return GitRemoteError(
        f"{loc}: larger than {over} bytes, so left out when this commit was fetched (with a "
        f"smaller max_metafile_bytes); remove {gitdir} from the cache to fetch it again"
    )


# -- remote repositories ---------------------------------------------------------------
@dataclass(frozen=True)
class Refs:
    """A server's refs: name -> commit (tags peeled), and where HEAD points."""

    commits: Mapping[str, str]
    head: str | None


@dataclass(frozen=True)
class RemoteRepo:
    """A remote repository as written (`url`) and as fetched (`fetch_url`, after the
    user's rewrites), with the credentials for the latter (never shown)."""

    url: str
    fetch_url: str
    auth: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.fetch_url.encode()).hexdigest()[:24]

    @property
    def key_of_auth(self) -> str:
        """Tells credentials apart without holding them."""
        return hashlib.sha256((self.auth or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GitURL:
    """A URL split into the remote repository and the path inside it."""

    repo: str
    path: str
    rev: str | None


def parse_git_url(uri: str, rev: str | None, *, whole: bool) -> GitURL | None:
    """`uri` as a remote git repository (`whole`: the URL names the repository itself,
    as `repo=` does), or None when it names no git repository:

    - `https://github.com/org/repo/...` (and GitLab, Bitbucket): the first two path
      segments; MLEM's `.../tree/<ref>/<path>` form gives the revision too;
    - any http(s) URL with a `.git` segment: the repository ends there;
    - any http(s) URL given as `repo=` (`whole`) with a `rev`;
    - `github://org:repo@<rev>/<path>` (fsspec's form, which MLEM reads).
    `ssh://`, `git://` raise `RemoteGitNotSupportedError`.

    >>> parse_git_url("https://github.com/org/models/tree/v1/rf.mlem", None, whole=False)
    GitURL(repo='https://github.com/org/models', path='rf.mlem', rev='v1')
    >>> parse_git_url("https://example.com/models/rf.mlem", None, whole=False) is None
    True
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("git", "ssh", "git+ssh", "git+https"):
        _policy.refuse_secrets(uri)
        raise RemoteGitNotSupportedError(
            f"{uri:.300}: {scheme}:// git repositories are not supported; use the "
            "repository's https:// URL (with a token in a remote of your user config)"
        )
    if scheme == "github":
        match = re.match(r"^github://([^:/@]+):([^:/@]+)(?:@([^/]+))?/?(.*)$", uri)
        if match is None:
            raise InvalidLinkError(f"{uri:.300}: not a github://org:repo@rev/path URL")
        org, name, at, path = match.groups()
        if not (_GITHUB_NAME.match(org) and _GITHUB_NAME.match(name)):
            raise InvalidLinkError(f"{uri:.300}: not a GitHub organisation and repository")
        return GitURL(f"https://github.com/{org}/{name}", path, rev or at)
    if scheme not in _policy.HTTP_SCHEMES:
        return None
    _policy.refuse_secrets(uri)
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise InvalidLinkError(f"{uri:.300}: not a valid URL") from None
    segments = [s for s in parts.path.split("/") if s]
    base = f"{parts.scheme.lower()}://{parts.netloc}"
    cut: int | None = None
    for index, segment in enumerate(segments):
        if segment.endswith(".git"):
            cut = index + 1
            break
    if cut is None and host in _policy.GIT_HOSTS:
        cut = min(2, len(segments))
    if cut is None:
        if not (whole and rev is not None):
            return None
        cut = len(segments)
    refuse_dot_segments(uri, parts.path)
    repo = "/".join([base, *segments[:cut]])
    rest = segments[cut:]
    if len(rest) >= 2 and rest[0] in ("tree", "blob") and host in _policy.GIT_HOSTS:
        # GitHub's form, which MLEM writes: /tree/<ref>/<path> (a ref without '/')
        if rev is not None and rev != rest[1]:
            raise InvalidLinkError(
                f"{uri:.300} names revision {rest[1]!r:.100} and rev={rev!r:.100} another"
            )
        rev, rest = rest[1], rest[2:]
    return GitURL(repo, "/".join(rest), rev)


def refuse_dot_segments(uri: str, path: str) -> None:
    """A repository URL with `.` or `..` segments (or `%2e%2e`, `..\\`) is refused: the HTTP
    client would resolve them, and reach a repository outside the prefix a remote (its
    token, its rewrite) or a policy check was matched against."""
    for segment in unquote(path).replace("\\", "/").split("/"):
        if segment in (".", ".."):
            raise InvalidLinkError(f"{uri:.300}: '.' and '..' are not allowed in a repository URL")


def remote_repo(url: str, remotes: Remotes | None) -> RemoteRepo:
    """`url` with the user's rewrites and credentials applied."""
    remotes = remotes or Remotes()
    fetch_url, rewriter = remotes.rewrite(url)
    _policy.refuse_secrets(fetch_url)  # (a rewrite may not smuggle credentials in either)
    try:
        refuse_dot_segments(fetch_url, urlsplit(fetch_url).path)
        urlsplit(fetch_url).port  # noqa: B018  (a malformed rewrite fails here, named)
    except ValueError:
        name = rewriter.name if rewriter is not None else "?"
        raise RemoteConfigError(
            f"remote {name!r}: rewrites {_shown(url)} to a malformed URL"
        ) from None
    remote = remotes.match(fetch_url)
    auth = None
    if remote is not None:
        options = remote.storage_options()  # (secrets from the environment, now)
        unknown = set(options) - GIT_OPTIONS
        if unknown:
            raise RemoteConfigError(
                f"remote {remote.name!r} ({remote.origin}) serves a git repository, which "
                f"takes only {sorted(GIT_OPTIONS)}; not {sorted(unknown)}"
            )
        remember(options)  # (masked in every message from now on)
        secret = options.get("token", options.get("password"))
        if secret is not None and not _may_carry_secrets(fetch_url):
            raise RemoteConfigError(
                f"remote {remote.name!r} ({remote.origin}) gives a token for "
                f"{_shown(fetch_url)}: a token is sent only over https (or to a loopback "
                "address), never in clear over the network"
            )
        if secret is not None:
            user = str(options.get("username") or "x-access-token")
            auth = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
    return RemoteRepo(url.rstrip("/"), fetch_url.rstrip("/"), auth)


def _may_carry_secrets(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return True
    ip = _policy.parse_ip(parts.hostname or "")
    return (ip is not None and ip.is_loopback) or (parts.hostname or "").lower() == "localhost"


def list_refs(repo: RemoteRepo, rev: str | None) -> Refs:
    """The repository's refs, in one request (protocol v0's ref advertisement)."""
    with _client(repo, rev) as (client, path):
        result = client.get_refs(path, protocol_version=0)
        commits: dict[str, str] = {}
        for name, value in result.refs.items():
            sha = value.decode("ascii", "replace") if isinstance(value, bytes) else ""
            if not FULL_SHA.match(sha):
                continue  # (a value that is not a commit id is never used, nor a path made of it)
            text = name.decode("utf-8", "replace")
            if text.endswith("^{}"):  # a tag's commit
                commits[text[:-3]] = sha
            else:
                commits.setdefault(text, sha)
        head = result.symrefs.get(b"HEAD")
    return Refs(commits, None if head is None else head.decode("utf-8", "replace"))


def commit_for(repo: RemoteRepo, rev: str | None, refs: Refs) -> str:
    """The commit `rev` names among `refs` (None: the default branch)."""
    sha = _commit_named(repo, rev, refs)
    if not FULL_SHA.match(sha):  # (it names a cache folder: nothing but a commit id)
        raise GitRemoteError(f"{_where(repo, rev)}: the server named a malformed commit id")
    return sha


def _commit_named(repo: RemoteRepo, rev: str | None, refs: Refs) -> str:
    where = _where(repo, rev)
    if rev is None or rev == "HEAD":
        sha = refs.commits.get("HEAD") or (refs.commits.get(refs.head) if refs.head else None)
        if sha is None:
            raise RevisionNotFound(f"{where}: the repository has no default branch (HEAD)")
        return sha
    if FULL_SHA.match(rev.lower()):
        return rev.lower()
    if rev.startswith("refs/"):
        found = {rev: refs.commits[rev]} if rev in refs.commits else {}
    else:
        found = {
            name: refs.commits[name]
            for name in (f"refs/tags/{rev}", f"refs/heads/{rev}")
            if name in refs.commits
        }
    if len(set(found.values())) > 1:
        raise RevisionNotFound(
            f"{where}: {rev!r} is both a branch and a tag, on different commits; "
            f"say which: rev='refs/heads/{rev}' or rev='refs/tags/{rev}'"
        )
    if found:
        return next(iter(found.values()))
    if SHORT_SHA.match(rev):
        # Only branches and tags: anyone can add refs elsewhere (`refs/pull/*` on GitHub)
        # and make a commit with a chosen short prefix.
        tips = {
            sha
            for name, sha in refs.commits.items()
            if name.startswith(("refs/heads/", "refs/tags/")) and sha.startswith(rev)
        }
        if len(tips) == 1:
            return tips.pop()
    raise RevisionNotFound(
        f"{where}: no branch, tag or commit {rev!r} (an abbreviated commit is found only "
        "at the tip of a branch or tag: give all 40 characters)"
    )


def cached_commit(repo: RemoteRepo, commit: str) -> GitFileSystem | None:
    """The cached copy of `commit`, if there is one: no request."""
    if not FULL_SHA.match(commit):
        raise GitRemoteError(f"{_shown(repo.url)}: {commit!r:.60} is not a commit id")
    entry = cache_root() / repo.key / commit
    if not (entry / "HEAD").is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # when it was last used, for eviction
    return _filesystem(entry, commit)


def fetch_commit(repo: RemoteRepo, rev: str | None, commit: str) -> GitFileSystem:
    """Fetch `commit` (shallow) into the cache, unless another process did meanwhile."""
    found = cached_commit(repo, commit)
    if found is not None:
        return found
    from dulwich.repo import Repo

    folder = cache_root() / repo.key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "url").write_text(_shown(repo.fetch_url) + "\n", encoding="utf-8")
    entry = folder / commit
    temporary = folder / f".tmp-{commit[:12]}-{os.getpid()}-{secrets.token_hex(4)}"
    left_out = filter_bytes()
    try:
        with _client(repo, rev) as (client, path):
            target = Repo.init_bare(str(temporary), mkdir=True)
            try:
                _fetch_checked(client, path, target, commit, left_out)
            finally:
                target.close()
            import pygit2

            fetched = pygit2.Repository(str(temporary))
            if commit not in fetched:
                raise RevisionNotFound(f"{_where(repo, rev)}: the server did not send {commit}")
            _check_complete(fetched, commit, _where(repo, rev))
        (temporary / FILTER_FILE).write_text(str(left_out), encoding="ascii")
        with contextlib.suppress(OSError):  # taken by another process: its copy is the same
            os.rename(temporary, entry)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    _evict(cache_root(), keep=entry)
    fs = cached_commit(repo, commit)
    if fs is None:  # pragma: no cover - evicted by another process at once
        raise GitRemoteError(f"{_where(repo, rev)}: the cache lost {commit} at once")
    return fs


def filter_bytes() -> int:
    """Blobs larger than this are left out of a fetch (where the server filters): they
    cannot be metafiles under the cap. At least `FILTER_BYTES`, so that a larger cap set
    later still finds the metafiles of a commit cached before."""
    return max(FILTER_BYTES, current_settings().max_metafile_bytes + 1)


def _fetch_checked(client: Any, path: str, target: Any, commit: str, left_out: int) -> None:
    """dulwich's `fetch`, with the pack checked (`check_pack`) before it is indexed."""
    from tempfile import SpooledTemporaryFile

    with SpooledTemporaryFile(max_size=8 << 20, dir=target.path) as pack:
        result = client.fetch_pack(
            path,
            lambda refs, depth=None: [commit.encode("ascii")],
            target.get_graph_walker(),
            pack.write,
            depth=1,
            filter_spec=f"blob:limit={left_out}".encode(),
        )
        if pack.tell():
            pack.seek(0)
            check_pack(pack, client.transfer)
            client.transfer.check_time()
            pack.seek(0)
            target.object_store.add_thin_pack(pack.read, None)
    target.update_shallow(result.new_shallow, result.new_unshallow)


def check_pack(stream: Any, transfer: _Transfer) -> None:
    """Walk a pack's objects without keeping any, before dulwich indexes it (which inflates
    each object, and applies each delta, in memory, with no deadline): at most
    `MAX_PACK_OBJECTS` objects; each object, and the result of each delta, inflates to
    its declared size and at most a quarter of `git_max_transfer_bytes` (or the fetch
    filter's size, if larger); all of them together to at most four times it; within the
    call's time budget. A small pack that inflates to gigabytes is refused here, having
    cost a few buffers."""
    header = stream.read(12)
    if len(header) < 12 or header[:4] != b"PACK":
        raise GitRemoteError(f"{transfer.where}: the server sent something that is not a pack")
    count = int.from_bytes(header[8:12], "big")
    if count > MAX_PACK_OBJECTS:
        raise transfer.too_much(f"a pack of {count} objects, more than {MAX_PACK_OBJECTS}:")
    each = max(transfer.limit // 4, filter_bytes())
    scanner = _PackScanner(stream, transfer, 4 * transfer.limit)
    for _ in range(count):
        byte = scanner.byte()
        kind, size, shift = (byte >> 4) & 7, byte & 15, 4
        while byte & 0x80:
            byte = scanner.byte()
            size |= (byte & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise scanner.broken("an object header that does not end")
        if size > each:
            raise transfer.too_much(f"an object of {size} bytes, over {each}:")
        if kind == 6:  # a delta on an earlier object of the pack: its offset
            for _ in range(11):
                if not scanner.byte() & 0x80:
                    break
            else:
                raise scanner.broken("a delta offset that does not end")
        elif kind == 7:  # a delta on an object named by its id
            scanner.take(20)
        head = scanner.inflate(size)
        if kind in (6, 7):
            result = _delta_result_size(head)
            if result is None:
                raise scanner.broken("a delta header that does not end")
            if result > each:
                raise transfer.too_much(f"a delta that makes {result} bytes, over {each}:")
            scanner.count(result)


def _delta_result_size(head: bytes) -> int | None:
    """A delta's second number (the size it makes), when both of its numbers end in
    `head` within the 10 bytes a 64-bit number needs; None otherwise (padded with
    continuation bytes, dulwich would read on past what was checked)."""
    at = value = 0
    for _number in range(2):
        value = shift = 0
        for _ in range(10):
            if at >= len(head):
                return None
            byte = head[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            return None
    return value


class _PackScanner:
    """Reads a pack stream for `check_pack`: bytes, and zlib streams inflated and dropped
    (a position in the current chunk: no copying per byte)."""

    def __init__(self, stream: Any, transfer: _Transfer, limit: int) -> None:
        self.stream, self.transfer, self.limit = stream, transfer, limit
        self.chunk = b""
        self.at = 0
        self.total = 0

    def broken(self, what: str) -> GitRemoteError:
        return GitRemoteError(f"{self.transfer.where}: the pack is broken ({what})")

    def _fill(self) -> None:
        self.transfer.check_time()
        chunk = self.stream.read(CHUNK)
        if not chunk:
            raise self.broken("it ends early")
        self.chunk = self.chunk[self.at :] + chunk
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.chunk):
            self._fill()
        self.at += 1
        return self.chunk[self.at - 1]

    def take(self, count: int) -> bytes:
        while len(self.chunk) - self.at < count:
            self._fill()
        self.at += count
        return self.chunk[self.at - count : self.at]

    def count(self, size: int) -> None:
        self.total += size
        if self.total > self.limit:
            raise self.transfer.too_much("objects that inflate, in all, past")

    def inflate(self, declared: int) -> bytes:
        """Inflate one zlib stream, keeping its first 32 bytes (a delta's sizes)."""
        import zlib

        inflater = zlib.decompressobj()
        produced, head = 0, b""
        while not inflater.eof:
            if self.at >= len(self.chunk):
                self._fill()
            data, self.chunk, self.at = self.chunk[self.at :], b"", 0
            while data and not inflater.eof:
                out = inflater.decompress(data, CHUNK)
                produced += len(out)
                if len(head) < 32:
                    head += out[: 32 - len(head)]
                if produced > declared:
                    raise self.broken("an object larger than it says")
                data = inflater.unconsumed_tail
            if inflater.eof:
                self.chunk = inflater.unused_data
        if produced != declared:
            raise self.broken("an object smaller than it says")
        self.count(declared)
        return head


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "mlemremote",
    )
    return Path(base) / "git"


def _filesystem(entry: Path, commit: str) -> GitFileSystem:
    from fsspec.implementations.git import GitFileSystem

    return GitFileSystem(path=str(entry), ref=commit)


def _evict(root: Path, keep: Path) -> None:
    """Remove the least recently used commits until the cache fits its size."""
    cap = current_settings().git_cache_max_bytes
    entries: list[tuple[float, int, Path]] = []
    now = time.time()
    for entry in root.glob("*/*"):
        if not entry.is_dir():
            continue
        if entry.name.startswith("."):  # a fetch or removal that never finished
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            continue
        with contextlib.suppress(OSError):
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            entries.append((entry.stat().st_mtime, size, entry))
    total = sum(size for _, size, _ in entries)
    for used, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= cap:
            break
        if entry == keep or now - used < RECENT_USE_SECONDS:
            continue
        trash = entry.with_name(f".trash-{entry.name}-{secrets.token_hex(4)}")
        with contextlib.suppress(OSError):
            os.rename(entry, trash)  # out of sight at once; removed after
            shutil.rmtree(trash, ignore_errors=True)
            total -= size


# -- the transport ---------------------------------------------------------------------
def _where(repo: RemoteRepo, rev: str | None) -> str:
    at = f" at {rev!r:.100}" if rev is not None else ""
    return f"git repository {_shown(repo.url)}{at}"


def _shown(url: str) -> str:
    return f"{url:.300}"


@contextlib.contextmanager
def _client(repo: RemoteRepo, rev: str | None) -> Iterator[tuple[Any, str]]:
    """A dulwich client for `repo`, and the path to give it; dulwich's and the network's
    exceptions come out as `MlemError`s that name the repository."""
    import zlib

    import pygit2
    from dulwich.errors import (
        ApplyDeltaError,
        ChecksumMismatch,
        GitProtocolError,
        HangupException,
        NotGitRepository,
    )

    where = _where(repo, rev)
    transfer: _Transfer | None = None
    try:
        if urlsplit(repo.fetch_url).scheme.lower() not in _policy.HTTP_SCHEMES:
            raise RemoteGitNotSupportedError(
                f"{where}: fetched from {_shown(repo.fetch_url)}: only http(s) git servers "
                "are fetched from (a git repository on local disk is read in place)"
            )
        transfer = _Transfer(repo, where)
        yield _http_client_class()(repo.fetch_url, transfer=transfer), ""
    except MlemError:
        raise
    except NotGitRepository as exc:
        raise GitRepoNotFoundError(f"{where}: no git repository there") from exc
    except HangupException as exc:
        raise GitUnreachableError(f"{where}: the server hung up ({_said(exc)})") from exc
    except GitProtocolError as exc:
        if "not our ref" in str(exc):
            raise RevisionNotFound(
                f"{where}: the server refuses to send that commit (not reachable from a "
                "branch or tag it advertises)"
            ) from exc
        raise GitRemoteError(f"{where}: the server broke the git protocol: {_said(exc)}") from exc
    except (zlib.error, ApplyDeltaError, ChecksumMismatch, AssertionError) as exc:
        raise GitRemoteError(f"{where}: the server sent a broken pack ({_said(exc)})") from exc
    except (OSError, ValueError, KeyError, pygit2.GitError) as exc:
        raise GitRemoteError(f"{where}: {type(exc).__name__}: {_said(exc)}") from exc
    finally:
        if transfer is not None:
            transfer.close()


def _said(exc: BaseException) -> str:
    """What an exception says, as one printable line of at most 200 characters (server
    text reaches messages through it: no terminal escapes)."""
    text = "".join(c if c.isprintable() else "?" for c in str(exc))
    return text if len(text) <= 200 else text[:197] + "..."


class _Response:
    """What dulwich reads of an HTTP response. dulwich reads a few bytes at a time (one
    pkt-line header, then its line): those are served from a buffer that is filled a
    chunk at a time from the event loop, not one round trip each."""

    def __init__(self, transfer: _Transfer, response: aiohttp.ClientResponse, moved: str) -> None:
        self._transfer = transfer
        self._response = response
        self._buffer = bytearray()
        self._ended = False
        self.status = response.status
        self.headers = response.headers
        self.content_type = response.headers.get("Content-Type")
        self.redirect_location = moved

    def read(self, size: int | None = None) -> bytes:
        whole = size is None or size < 0
        while not self._ended and (whole or len(self._buffer) < (size or 0)):
            chunk = self._transfer.read(self._response)
            self._ended = not chunk
            self._buffer += chunk
        taken = len(self._buffer) if whole else min(size or 0, len(self._buffer))
        data = bytes(self._buffer[:taken])
        del self._buffer[:taken]
        return data

    def close(self) -> None:
        self._response.close()


class _Transfer:
    """The HTTP exchanges of one git operation: on the http store's checked connector,
    within the call's time budget, and at most `git_max_transfer_bytes` received."""

    def __init__(self, repo: RemoteRepo, where: str) -> None:
        import yarl
        from fsspec.asyn import get_loop

        self.repo = repo
        self.where = where
        self.loop = get_loop()
        self.start = yarl.URL(repo.fetch_url)
        self.received = 0
        self.limit = current_settings().git_max_transfer_bytes
        # One deadline for the whole operation (a bulk call's own budget for each read
        # would let a trickle go on forever, one read at a time).
        self.deadline = time.monotonic() + remaining(where, "read")
        self._session: aiohttp.ClientSession | None = None

    def check_time(self) -> float:
        """Seconds left; `TimeBudgetError` when there are none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            budget = current_settings().retry_max_seconds
            raise TimeBudgetError(
                f"{self.where}: not done within the call's time budget "
                f"(retry_max_seconds={budget:g}); a slow or stalled server?"
            )
        return left

    def too_much(self, what: str) -> GitTransferLimitError:
        return GitTransferLimitError(
            f"{self.where}: the server sent {what} the limit (git_max_transfer_bytes="
            f"{self.limit}: received, and four times that inflated); cut off, nothing kept"
        )

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        import aiohttp

        left = self.check_time()

        async def bounded() -> T:
            return await asyncio.wait_for(work(), left)

        future = asyncio.run_coroutine_threadsafe(bounded(), self.loop)
        try:
            return future.result()
        except (asyncio.TimeoutError, TimeoutError):
            self.check_time()
            raise  # pragma: no cover - the deadline has passed: check_time raised
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise GitUnreachableError(f"{self.where}: the connection failed: {exc}") from exc

    def request(
        self, url: str, headers: Mapping[str, str] | None, data: Any
    ) -> tuple[_Response, Callable[[int], bytes]]:
        body = data if data is None or isinstance(data, bytes) else b"".join(data)
        response, moved = self.run(lambda: self._request(url, dict(headers or {}), body))
        answer = _Response(self, response, moved)
        return answer, answer.read

    async def _request(
        self, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[aiohttp.ClientResponse, str]:
        import yarl

        from mlemremote._stores.http import (
            MAX_REDIRECTS,
            checked_connector,
            redirect_target,
            refusal_in,
            url_origin,
        )

        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=checked_connector(True, self.limit),
                trust_env=False,  # no proxies or .netrc credentials from the environment
                cookie_jar=aiohttp.DummyCookieJar(),
                # The call's budget bounds the whole; connecting has its own limit.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=current_settings().connect_timeout
                ),
            )
        target = yarl.URL(url)
        start = url_origin(self.start)
        for _hop in range(MAX_REDIRECTS + 1):
            _policy.check_http_address(str(target), self.where, [target.host or ""])
            sent = dict(headers)
            if self.repo.auth is not None and url_origin(target) == start:
                sent["Authorization"] = self.repo.auth
            try:
                response = await self._session.request(
                    "GET" if body is None else "POST",
                    target,
                    headers=sent,
                    data=body,
                    allow_redirects=False,
                )
            except Exception as exc:
                refusal = refusal_in(exc)
                if refusal is not None:
                    raise refusal from None
                raise GitUnreachableError(f"{self.where}: cannot connect: {exc}") from exc
            if response.status in (301, 302, 303, 307, 308) and body is None:
                response.release()
                target = redirect_target(self.where, target, response, start)
                continue
            self._check(response)
            return response, (str(target) if str(target) != url else "")
        raise GitRemoteError(f"{self.where}: more than {MAX_REDIRECTS} redirects")

    def _check(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status == 200:
            kind = response.headers.get("Content-Type", "")
            if not kind.startswith("application/x-git-"):
                response.close()
                raise GitRepoNotFoundError(
                    f"{self.where}: not a git server (an answer of type {kind[:60]!r}; only "
                    "Git's smart HTTP protocol is used)"
                )
            return
        response.close()
        if status in (401, 403):
            given = "were refused" if self.repo.auth else "are needed and none were given"
            raise GitAuthError(
                f"{self.where}: HTTP {status}: credentials {given}; give a token through a "
                "remote in your user config (env: {token: VARIABLE})"
            )
        if status in (404, 410):
            raise GitRepoNotFoundError(f"{self.where}: no git repository there (HTTP {status})")
        raise GitRemoteError(f"{self.where}: HTTP {status} from the server")

    def read(self, response: aiohttp.ClientResponse) -> bytes:
        """The next chunk of `response` (b"" at its end), counted against the limit."""
        data = self.run(lambda: response.content.read(CHUNK))
        self.received += len(data)
        if self.received > self.limit:
            response.close()
            raise self.too_much("more than")
        return data

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(session.close(), self.loop).result(5)


@functools.cache
def _http_client_class() -> type[Any]:
    from dulwich.client import AbstractHttpGitClient

    class CheckedHttpGitClient(AbstractHttpGitClient):
        """dulwich's smart HTTP client over `_Transfer` (never the "dumb" protocol)."""

        def __init__(self, base_url: str, *, transfer: _Transfer) -> None:
            super().__init__(base_url, dumb=False)
            self.transfer = transfer

        def _http_request(
            self,
            url: str,
            headers: dict[str, str] | None = None,
            data: Any = None,
            raise_for_status: bool = True,
        ) -> tuple[Any, Callable[[int], bytes]]:
            return self.transfer.request(url, headers, data)

    return CheckedHttpGitClient
