"""One `Location` for every backend: a path on an fsspec filesystem, plus its repo."""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import fsspec
import fsspec.config
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from mlemremote._foreign import to_mlem_error
from mlemremote._options import Layer, Row, option_layers, plan_for, protocols_of
from mlemremote._paths import (
    CONFIG_FILE,
    MLEM_DIR,
    MLEM_EXT,
    READ_ONLY_SCHEMES,
    is_inside,
    join,
    relpath,
    repo_from_path,
    split_scheme,
    top_of,
)
from mlemremote._policy import refuse_secrets
from mlemremote._redact import remember
from mlemremote._remotes import Remote, Remotes
from mlemremote._remotes import current as current_remotes
from mlemremote._stores import git, read_bytes, store_for
from mlemremote.core.errors import (
    BucketNotFoundError,
    InvalidArgumentError,
    InvalidLinkError,
    RevisionNotFound,
    RevisionNotSupportedError,
    UnsupportedLocationError,
)

SUPPORTED_SCHEMES = frozenset(
    {"file", "local", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "http", "https"}
)
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}

_UNKNOWN: Any = object()
T = TypeVar("T")


class Location:
    """A metafile or folder on some backend: filesystem, path, and the repo it lives in.

    ``fullpath`` is the filesystem's own path (``bucket/key``, ``/abs/path``); ``uri`` adds
    the scheme. ``repo`` is the repo root (a filesystem path), found lazily: from a
    ``.mlem/`` component of the path, from the caller, or by one GET of
    ``.mlem/config.yaml`` per folder up to the bucket (never above it).

    >>> loc = resolve("memory://repo/.mlem/link/latest.mlem")
    >>> (loc.uri, loc.repo, loc.path)
    ('memory:///repo/.mlem/link/latest.mlem', '/repo', '.mlem/link/latest.mlem')
    """

    def __init__(
        self,
        fs: AbstractFileSystem,
        fullpath: str,
        scheme: str,
        *,
        repo: str | None = _UNKNOWN,
        rev: str | None = None,
        git_root: str | None = None,
    ) -> None:
        self.fs = fs
        self.fullpath = fullpath
        self.scheme = scheme
        self.rev = rev
        self._repo = repo
        # Set for a location inside a git revision: the repository it belongs to (a
        # folder on local disk, or the URL of a remote repository).
        self.git_root = git_root

    # -- naming ------------------------------------------------------------------------
    def uri_of(self, fullpath: str) -> str:
        """The URI of another path on the same filesystem."""
        if self.git_root is not None and "://" in self.git_root:
            return posixpath.join(self.git_root, fullpath).rstrip("/")
        if self.git_root is not None:
            return "file://" + posixpath.join(self.git_root, fullpath).rstrip("/")
        if self.scheme in READ_ONLY_SCHEMES:
            return fullpath
        return f"{self.scheme}://{fullpath}"

    @property
    def uri(self) -> str:
        """The full URI with its scheme, e.g. ``s3://bucket/key`` or ``file:///abs/path``."""
        return self.uri_of(self.fullpath)

    @property
    def repo(self) -> str | None:
        """The repo root as a filesystem path, or None outside any repo."""
        if self._repo is _UNKNOWN:
            self._repo = _find_repo(self)
        return self._repo

    @property
    def repo_uri(self) -> str | None:
        return None if self.repo is None else self.uri_of(self.repo)

    @property
    def path(self) -> str:
        """The path inside the repo, or the full path when there is no repo."""
        repo = self.repo
        return self.fullpath if repo is None else relpath(self.fullpath, repo)

    @property
    def bucket(self) -> str:
        """The top folder a relative link may not leave: a bucket, a host or the root."""
        return top_of(self.scheme, self.fullpath) if self.git_root is None else ""

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem) and self.git_root is None

    @property
    def read_only(self) -> bool:
        return self.scheme in READ_ONLY_SCHEMES or self.rev is not None or bool(self.git_root)

    def same_storage(self, other: Location) -> bool:
        """Same filesystem (same backend, endpoint and revision) and same bucket."""
        return (
            self.fs == other.fs
            and self.rev == other.rev
            and self.git_root == other.git_root
            and self.bucket == other.bucket
        )

    def sibling(
        self, fullpath: str, *, repo: str | None = _UNKNOWN, same_version: bool = False
    ) -> Location:
        """Another path on the same filesystem. A git revision covers the whole tree, so
        it carries over; an object version belongs to one object, so it carries over only
        with `same_version` (other names for the same object)."""
        keep = self.git_root is not None or same_version
        return Location(
            self.fs,
            fullpath,
            self.scheme,
            repo=repo,
            rev=self.rev if keep else None,
            git_root=self.git_root,
        )

    @property
    def known_repo(self) -> str | None:
        """The repo root when it is known without a request (given, or named by a `.mlem/`
        component of the path); None otherwise (`repo` looks it up)."""
        return self._repo if self._repo is not _UNKNOWN else repo_from_path(self.fullpath)

    def as_repo(self) -> Location:
        """This folder, taken as a repo root."""
        return self.sibling(self.fullpath, repo=self.fullpath, same_version=True)

    def __repr__(self) -> str:
        rev = f"@{self.rev}" if self.rev else ""
        return f"Location({self.uri!r}{rev})"

    def __str__(self) -> str:
        return self.uri + (f"@{self.rev}" if self.rev else "")


# -- resolving -------------------------------------------------------------------------
def filesystem(
    scheme: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    remotes: tuple[Remote | None, Remote | None] = (None, None),
) -> AbstractFileSystem:
    """The fsspec filesystem for a scheme, its options merged from every source in one
    step (`_options`): the call's `storage_options`, the user's and the repo's remote for
    the URI (`remotes`), fsspec's configuration, the default connect timeout; the SDK
    reads its own environment for the rest. Never from link YAML.
    Only the schemes this library has a store for are opened: other fsspec filesystems
    (ftp, sftp, github, ...) may connect somewhere as soon as they are made."""
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedLocationError(
            f"{_short(scheme)}:// is not supported; use one of "
            + ", ".join(f"{s}://" for s in sorted(SUPPORTED_SCHEMES))
        )
    cls = filesystem_class(scheme)
    if scheme == "file" or cls is LocalFileSystem:
        return fsspec.filesystem("file")
    layers = option_layers(storage_options, remotes)
    for layer in layers:
        remember(layer.options)
    for protocol in protocols_of(cls):
        remember(fsspec.config.conf.get(protocol))
    kwargs = plan_for(cls, layers).kwargs  # (StorageOptionError: a conflict, named)
    try:
        return fsspec.filesystem(scheme, **kwargs)
    except Exception as exc:
        # A missing or malformed setting (no Azure account, a bad connection string or
        # service-account dict, an option the backend does not take): say which scheme.
        cause = to_mlem_error(exc, f"the {scheme}:// settings")
        raise UnsupportedLocationError(
            f"cannot open {scheme}:// with the settings given (storage options, remotes, "
            f"fsspec configuration, environment): {cause}"
        ) from None


def filesystem_class(scheme: str) -> type[AbstractFileSystem]:
    """fsspec's class for `scheme`; `UnsupportedLocationError` when its package is
    missing (naming the extra to install)."""
    try:
        return fsspec.get_filesystem_class(scheme)  # type: ignore[no-any-return]
    except ValueError:
        raise UnsupportedLocationError(f"unknown URI scheme {_short(scheme)}") from None
    except ImportError as exc:
        extra = EXTRAS.get(scheme)
        hint = f": pip install 'mlemremote[{extra}]'" if extra else ""
        raise UnsupportedLocationError(f"{scheme}:// needs a backend package{hint}") from exc


def resolve(
    path: str,
    repo: str | None = None,
    rev: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    like: Location | None = None,
) -> Location:
    """Turn a local path or URI (optionally inside `repo`, at `rev`) into a `Location`.

    `like`: a location whose filesystem is reused when the scheme matches (so a link
    followed inside one bucket keeps the caller's endpoint and credentials).

    >>> from mlemremote import resolve
    >>> resolve("memory://models/rf.mlem").uri
    'memory:///models/rf.mlem'
    """
    storage_options = _checked_arguments(path, storage_options)
    in_git = _remote_git(path, repo, rev)
    if in_git is not None:
        return in_git
    if repo is not None:
        repo_loc = resolve(repo, storage_options=storage_options, like=like)
        scheme, _ = split_scheme(path)
        if scheme is None and not path.startswith("/"):
            full = join(repo_loc.fullpath, path)
            plain = join(repo_loc.fullpath, unquote(path).replace("\\", "/"))
            if not (is_inside(full, repo_loc.fullpath) and is_inside(plain, repo_loc.fullpath)):
                raise InvalidLinkError(f"{_short(path)} leaves repo {repo_loc.uri}")
            if repo_loc.fullpath in (full, plain):  # `<repo>.mlem` is outside the repo
                raise InvalidLinkError(f"{_short(path)} names repo {repo_loc.uri} itself")
            loc = repo_loc.sibling(full, repo=repo_loc.fullpath)
            if rev is None and repo_loc.is_local and is_bare_git(repo_loc.fullpath):
                rev = "HEAD"  # a bare repository has its files only in git: its default branch
        else:
            loc = resolve(path, storage_options=storage_options, like=repo_loc)
            if not (loc.same_storage(repo_loc) and is_inside(loc.fullpath, repo_loc.fullpath)):
                raise InvalidLinkError(f"{loc.uri} is not inside repo {repo_loc.uri}")
            if loc.fullpath.rstrip("/") == repo_loc.fullpath.rstrip("/"):
                raise InvalidLinkError(f"{_short(path)} names repo {repo_loc.uri} itself")
            loc._repo = repo_loc.fullpath
        return at_revision(loc, rev) if rev is not None else loc

    refuse_secrets(path)
    scheme, uri = split_scheme(path)
    if scheme is None:
        scheme, fullpath = "file", os.path.abspath(os.path.expanduser(path))
        fs = filesystem("file", None)
    else:
        fs = _filesystem_for(scheme, uri, storage_options, like)
        _check_url_account(uri, fs)
        fullpath = fs._strip_protocol(uri)
        if scheme == "file":
            if not uri.split("://", 1)[1].strip("/"):  # fsspec would make it the cwd
                raise InvalidLinkError(f"{_short(path)} names no path")
            fullpath = os.path.abspath(fullpath)
    loc = Location(fs, fullpath, scheme)
    return at_revision(loc, rev) if rev is not None else loc


def _check_url_account(uri: str, fs: AbstractFileSystem) -> None:
    """adlfs drops what `az://container@account.blob.core.windows.net/...` (or
    `abfs://account.dfs.core.windows.net/container/...`) says of the account
    (`_strip_protocol`) and reads `container/...` of the account its filesystem
    was made for: a link naming another account would silently be read from yours. The
    account a URL names must be the filesystem's."""
    if not isinstance(fs.protocol, (tuple, list)) or not {"az", "abfs"} & set(fs.protocol):
        return
    authority = uri.split("://", 1)[1].split("/", 1)[0]
    # (It drops a host holding `.dfs.core.windows.net`, `@` or not, as it does the
    # `container@account...` form: `abfs://theirs.dfs.core.windows.net/c/m` is `c/m`.)
    if "@" not in authority and ".dfs.core.windows.net" not in authority:
        return
    named = authority.rsplit("@", 1)[-1].split(".", 1)[0].lower()
    client = getattr(fs, "service_client", None)
    have = str(getattr(fs, "account_name", None) or getattr(client, "account_name", "") or "")
    if named != have.lower():
        raise InvalidLinkError(
            f"{_short(uri)} names Azure account {named!r}, but it would be read from "
            f"account {have or '(none)'!r} (the storage options'); name the account with "
            "the account_name option (or a remote for the URL), not in the URL"
        )


def _remote_git(path: str, repo: str | None, rev: str | None) -> Location | None:
    """`path` (inside `repo`) when it names a remote git repository (see
    `_stores.git.parse_git_url`), at `rev`; None otherwise."""
    if (repo is not None and not isinstance(repo, str)) or (
        rev is not None and (not isinstance(rev, str) or not rev)
    ):
        return None  # (refused as such by the checks that follow)
    if repo is None:
        spec = git.parse_git_url(path, rev, whole=False)
        if spec is None:
            return None
        inner, repo_path = spec.path.strip("/"), _UNKNOWN
    else:
        spec = git.parse_git_url(repo, rev, whole=True)
        if spec is None:
            return None
        repo_path = spec.path.strip("/")
        if split_scheme(path)[0] is not None or path.startswith("/"):
            raise InvalidLinkError(
                f"{_short(path)}: inside the git repository {spec.repo}, name a path relative "
                "to the repo"
            )
        inner = join(repo_path, path)
        plain = join(repo_path, unquote(path).replace("\\", "/"))
        if not (is_inside(inner, repo_path) and is_inside(plain, repo_path)):
            raise InvalidLinkError(f"{_short(path)} leaves repo {spec.repo}")
        if repo_path in (inner, plain):
            raise InvalidLinkError(f"{_short(path)} names repo {spec.repo} itself")
    if inner.startswith("../") or inner == "..":
        raise InvalidLinkError(f"{_short(path)} leaves the git repository {spec.repo}")
    return Location(
        open_git(spec.repo, spec.rev),
        inner,
        spec.repo.split("://", 1)[0],
        repo=repo_path,
        rev=spec.rev,
        git_root=spec.repo,
    )


def open_git(url: str, rev: str | None) -> AbstractFileSystem:
    """The tree of remote repository `url` at `rev` (None: its default branch): from the
    cache when `rev` is a commit there (no request); else its refs are listed (once per
    call) and the commit fetched unless cached."""
    remote = git.remote_repo(url, current_remotes())
    cache = _probes.get()
    if rev is not None and git.FULL_SHA.match(rev.lower()):
        commit = rev.lower()
    else:
        refs = single_flight(
            cache,
            f"git-refs|{remote.fetch_url}|{remote.key_of_auth}",
            lambda: git.list_refs(remote, rev),
        )
        commit = git.commit_for(remote, rev, refs)
    found = git.cached_commit(remote, commit)
    if found is not None:
        return found
    return single_flight(
        cache,
        f"git-fetch|{remote.fetch_url}|{commit}",
        lambda: git.fetch_commit(remote, rev, commit),
    )


def is_bare_git(folder: str) -> bool:
    """Is `folder` on local disk a bare git repository (no work tree, no `.mlem/`)?"""
    return (
        os.path.isfile(os.path.join(folder, "HEAD"))
        and os.path.isdir(os.path.join(folder, "objects"))
        and os.path.isdir(os.path.join(folder, "refs"))
        and not os.path.isdir(os.path.join(folder, MLEM_DIR))
    )


def _printable(text: str) -> bool:
    """False for text with control characters (NUL, newlines, escapes: they end up in
    messages and terminals) or lone surrogates (no file or URL can be named by them)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:196] + "...'"


def _filesystem_for(
    scheme: str,
    uri: str,
    storage_options: Mapping[str, Any] | None,
    like: Location | None,
) -> AbstractFileSystem:
    """A link within one bucket keeps its filesystem; else the options of every source
    are merged (`filesystem`): the call's (for a location named in the call), the
    remotes for `uri`. A link that leaves its bucket for no remote keeps the filesystem it
    came from (same protocol), else fsspec's defaults."""
    same_protocol = like is not None and like.git_root is None and scheme in _protocols(like.fs)
    if (
        storage_options is None
        and like is not None
        and same_protocol
        and top_of(scheme, like.fs._strip_protocol(uri)) == like.bucket
    ):
        return like.fs
    # A repo's shared config is never mixed into options the caller gave: it could send
    # them (and the credentials of fsspec's configuration) to an endpoint of its choice.
    remotes = (current_remotes() or Remotes()).for_uri(uri, repo=storage_options is None)
    # (Not over http(s), where the bucket is the origin: the filesystem's headers and
    # auth were given for the origin it was made for, and would go to the link's.)
    if (
        storage_options is None
        and remotes == (None, None)
        and like is not None
        and same_protocol
        and scheme not in READ_ONLY_SCHEMES
    ):
        return like.fs
    return filesystem(scheme, storage_options, remotes=remotes)


def _protocols(fs: AbstractFileSystem | type[AbstractFileSystem]) -> tuple[str, ...]:
    proto = fs.protocol
    return tuple(proto) if isinstance(proto, (tuple, list)) else (proto,)


def at_revision(loc: Location, rev: str) -> Location:
    """The same location read at revision `rev`: a git commit, branch or tag on local
    disk; an S3 VersionId or a GCS generation in a bucket that keeps versions. Other
    backends raise `RevisionNotSupportedError` naming the backend."""
    if not isinstance(rev, str) or not rev:
        raise RevisionNotFound(f"rev must be a non-empty string, not {rev!r}")
    if loc.git_root is not None and loc.rev == rev:
        return loc
    if loc.git_root is not None and "://" in loc.git_root:
        return Location(
            open_git(loc.git_root, rev),
            loc.fullpath,
            loc.scheme,
            repo=loc._repo,
            rev=rev,
            git_root=loc.git_root,
        )
    if loc.git_root is not None:  # another revision of a repo on local disk
        root, repo = loc.git_root, loc._repo
        loc = Location(
            filesystem("file", None),
            posixpath.join(root, loc.fullpath).rstrip("/"),
            "file",
            repo=posixpath.join(root, repo).rstrip("/") if isinstance(repo, str) else repo,
        )
    if not loc.is_local:
        store_for(loc).check_versions(loc)
        return Location(loc.fs, loc.fullpath, loc.scheme, repo=loc._repo, rev=rev)
    try:
        import pygit2
        from fsspec.implementations.git import GitFileSystem
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RevisionNotSupportedError(
            "rev= on local git repositories needs pygit2: pip install 'mlemremote[git]'"
        ) from exc
    start = loc.fullpath
    while not os.path.isdir(start) and os.path.dirname(start) != start:
        start = os.path.dirname(start)  # (in a bare repository, paths are only in git)
    gitdir = pygit2.discover_repository(start)
    if gitdir is None:
        raise RevisionNotSupportedError(
            f"rev={rev!r}: local disk keeps no versions outside git, and {loc.uri} is not "
            "in a git repository"
        )
    repository = pygit2.Repository(gitdir)
    root = (repository.workdir or repository.path).rstrip("/")  # (bare: no work tree)
    try:
        repository.revparse_single(rev)
    except (KeyError, ValueError) as exc:
        raise RevisionNotFound(f"revision {rev!r} not found in {root}") from exc
    named = [repository.references.get(f"refs/{kind}/{rev}") for kind in ("heads", "tags")]
    if all(named) and len({str(r.peel(pygit2.Commit).id) for r in named if r}) > 1:
        # (git would take the tag silently; a remote repository refuses this too)
        raise RevisionNotFound(
            f"{root}: {rev!r} is both a branch and a tag, on different commits; say which: "
            f"rev='refs/heads/{rev}' or rev='refs/tags/{rev}'"
        )
    fs = GitFileSystem(path=root, ref=rev)
    inner = relpath(loc.fullpath, root)
    if inner == ".":
        inner = ""
    repo = loc._repo
    if repo is not _UNKNOWN and repo is not None:
        repo = "" if repo == root else relpath(repo, root)
    return Location(fs, inner, "file", repo=repo, rev=rev, git_root=root)


# -- repo lookup -----------------------------------------------------------------------
# Repo probes made during one API call, so that the source and the target of a link,
# which often share their upper folders, do not ask for the same config.yaml twice; with
# concurrent workers (load_many) one probe is in flight per folder, the others wait for it.
_probes: ContextVar[dict[str, Future[Any]] | None] = ContextVar("mlemremote_probes", default=None)
_probes_lock = threading.Lock()


@contextmanager
def shared_repo_probes() -> Iterator[None]:
    if _probes.get() is not None:  # nested call: share the outer cache
        yield
        return
    token = _probes.set({})
    try:
        yield
    finally:
        _probes.reset(token)


def single_flight(cache: dict[str, Future[T]] | None, key: str, compute: Callable[[], T]) -> T:
    """`compute()` once per key in `cache` (None: no cache); concurrent callers of one key
    wait for the first one's answer (or error)."""
    if cache is None:
        return compute()
    with _probes_lock:
        future = cache.get(key)
        owner = future is None
        if future is None:
            future = cache[key] = Future()
    if owner:
        try:
            future.set_result(compute())
        except BaseException as exc:
            future.set_exception(exc)
    return future.result()


def is_repo_root(loc: Location, folder: str) -> bool:
    """Is `folder` (on `loc`'s filesystem) a repo root? On local disk, MLEM's own test:
    a `.mlem` folder is there (`mlem init` leaves out config.yaml when `.mlem/` exists, and
    MLEM then reads relative paths against that root: so must we). Elsewhere, where
    folders are only key prefixes: `.mlem/config.yaml` is there, one GET per folder and
    call."""
    if loc.is_local:
        return os.path.isdir(os.path.join(folder or "/", MLEM_DIR))
    config = loc.sibling(join(folder, MLEM_DIR, CONFIG_FILE), repo=None)
    key = f"{config}|{id(loc.fs)}"
    return bool(single_flight(_probes.get(), key, lambda: read_bytes(config) is not None))


def require_bucket(loc: Location, verb: str = "read") -> None:
    """Raise `BucketNotFoundError` when the bucket (container) of `loc` does not exist:
    asked where a miss could be a mistyped bucket (one request per bucket and call, on
    object stores only; some servers answer a missing bucket as a missing file)."""
    if loc.git_root is not None:
        return
    store = store_for(loc)
    key = f"bucket|{loc.scheme}://{loc.bucket}|{id(loc.fs)}"
    if not single_flight(_probes.get(), key, lambda: store.bucket_exists(loc)):
        raise BucketNotFoundError(
            f"cannot {verb} {loc}: the {store.bucket_word} {loc.bucket!r} does not exist"
        )


def _find_repo(loc: Location) -> str | None:
    named = repo_from_path(loc.fullpath)
    if named is not None:
        return named
    top = loc.bucket
    folder = loc.fullpath
    if folder.endswith(MLEM_EXT):  # a metafile: its folder is the first candidate
        folder = posixpath.dirname(folder)
    while True:
        if is_repo_root(loc, folder):
            return folder
        if folder in (top, "", "/") or not is_inside(folder, top):
            return None
        parent = posixpath.dirname(folder.rstrip("/"))
        if parent == folder:
            return None
        folder = parent


def anchor_remotes(loc: Location) -> None:
    """Make `loc`'s repo (when known without a request) the one whose remotes apply in
    this call's scope (the first one named wins)."""
    remotes = current_remotes()
    if remotes is None or remotes.repo_config is not None:
        return
    repo = loc.known_repo
    if repo is not None:
        config = loc.sibling(join(repo, MLEM_DIR, CONFIG_FILE), repo=None)
        remotes.repo_config = (lambda: read_bytes(config), str(config))


def confined(loc: Location, root: str) -> bool:
    """On local disk: is `loc` inside `root` once symlinks are resolved? (A symlink in a
    repo must not lead a link, or a write, out of it.) Elsewhere there are no symlinks."""
    if not loc.is_local:
        return True
    return is_inside(os.path.realpath(loc.fullpath), os.path.realpath(root))


# -- explaining options ------------------------------------------------------------------
@dataclass
class Explanation:
    """What `explain_options` found for one URI: the options its filesystem is made with
    and the source of each (`rows`, secrets masked), and how the URI is reached."""

    uri: str
    backend: str
    how: str
    rows: list[Row] = field(default_factory=list)
    problem: str | None = None  # a conflict or unknown option: what a call would raise

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "backend": self.backend,
            "how": self.how,
            "options": [r.as_dict() for r in self.rows],
            "problem": self.problem,
        }


def _checked_arguments(path: object, storage_options: object) -> Mapping[str, Any] | None:
    """`path` must be a printable, non-blank string and `storage_options` a mapping or
    None; returns the options, `{}` as None (no options: the remotes still apply)."""
    if isinstance(path, os.PathLike):  # (as MLEM's load_meta: a str; said, not "not valid")
        raise InvalidLinkError(
            f"a path or URI must be a string, not {type(path).__name__}: give str(path)"
        )
    if not isinstance(path, str) or not path.strip() or not _printable(path):
        raise InvalidLinkError(f"not a valid path: {_short(path)}")
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise InvalidArgumentError(
            f"storage_options must be a mapping of option names to values, not "
            f"{type(storage_options).__name__}"
        )
    return storage_options or None


def explain_options(
    path: str, repo: str | None = None, *, storage_options: Mapping[str, Any] | None = None
) -> Explanation:
    """The storage options a call would open `path` with (in `repo`), and where each
    comes from; nothing is read, except the repo's config when `path` lies outside
    `repo` (it is then taken as a link target read from `repo`, whose remotes apply)."""
    storage_options = _checked_arguments(path, storage_options)
    if repo is None:
        return _explain_named(path, storage_options, "named in the call")
    repo_loc = resolve(repo, storage_options=storage_options)
    scheme, _ = split_scheme(path)
    if repo_loc.git_root is not None or (scheme is None and not path.startswith("/")):
        return _explain_named(repo_loc.uri, storage_options, f"in repo {repo_loc.uri}")
    return _explain_target(path, repo_loc, storage_options)


def _explain_named(path: str, storage_options: Mapping[str, Any] | None, how: str) -> Explanation:
    refuse_secrets(path)
    scheme, uri = split_scheme(path)
    if scheme is None or scheme in ("file", "local"):
        return Explanation(path, "local disk", how + "; local disk takes no storage options")
    if git.parse_git_url(path, None, whole=False) is not None:
        return Explanation(
            path, "git", how + "; a git repository takes no storage options (your remotes "
            "give its username and token)"
        )  # fmt: skip
    remotes = (current_remotes() or Remotes()).for_uri(uri, repo=storage_options is None)
    return _explained(scheme, uri, option_layers(storage_options, remotes), how)


def _explain_target(
    path: str, repo_loc: Location, storage_options: Mapping[str, Any] | None
) -> Explanation:
    """`path` as a call naming it in `repo_loc` reaches it: in the repo's bucket, with the
    repo's filesystem (or the call's options); elsewhere, as a link read from the repo."""
    refuse_secrets(path)
    scheme, uri = split_scheme(path)
    if scheme is None or scheme in ("file", "local") or git.parse_git_url(path, None, whole=False):
        return _explain_named(path, storage_options, "named in the call")
    same_protocol = scheme in _protocols(repo_loc.fs)
    cls = filesystem_class(scheme)
    if same_protocol and top_of(scheme, cls._strip_protocol(uri)) == repo_loc.bucket:
        how = f"in the bucket of repo {repo_loc.uri}"
        if storage_options is not None:
            return _explain_named(path, storage_options, how)
        found = _explain_named(repo_loc.uri, None, how + ": with the repo's filesystem")
        found.uri = path
        return found
    anchor_remotes(repo_loc.as_repo())
    remotes = (current_remotes() or Remotes()).for_uri(uri)
    how = f"a link target read from repo {repo_loc.uri}"
    if remotes == (None, None) and same_protocol and scheme not in READ_ONLY_SCHEMES:
        # The filesystem the link was read with: the repo's own.
        inherited = _explain_named(repo_loc.uri, None, how)
        inherited.how = f"{how}: no remote for it, so the repo's own filesystem"
        return inherited
    return _explained(scheme, uri, option_layers(None, remotes), how)


def _explained(scheme: str, uri: str, layers: list[Layer], how: str) -> Explanation:
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedLocationError(f"{_short(scheme)}:// is not supported")
    cls = filesystem_class(scheme)
    for layer in layers:
        remember(layer.options)
    for protocol in protocols_of(cls):
        remember(fsspec.config.conf.get(protocol))
    plan = plan_for(cls, layers, strict=False, explain=True)
    problem = None if plan.problem is None else str(plan.problem)
    return Explanation(
        uri if "://" in uri else f"{scheme}://{uri}", plan.backend, how, plan.rows, problem
    )
