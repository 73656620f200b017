"""Finding metafiles, following links, and writing links and objects."""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import yaml

from mlemremote._location import (
    _UNKNOWN,
    BUCKET_SCHEMES,
    CONFIG_FILE,
    HISTORY_PREFIX,
    MLEM_DIR,
    MLEM_EXT,
    Location,
    at_revision,
    is_inside,
    join,
    relpath,
    repo_from_path,
    resolve,
    single_flight,
    split_scheme,
)
from mlemremote._settings import current as current_settings
from mlemremote._stores import (
    Answer,
    Blob,
    Expect,
    Expected,
    WriteConflict,
    read_bytes,
    store_for,
)
from mlemremote.core.errors import (
    AliasChangedError,
    InvalidLinkError,
    LinkChainTooLongError,
    LinkCycleError,
    MlemError,
    MlemObjectNotFound,
    MlemObjectNotSavedError,
    MlemRootNotFound,
    ObjectExistsError,
    RevisionNotSupportedError,
    WrongMetaType,
)
from mlemremote.core.objects import TYPE_FOLDERS, MlemLink, MlemObject, parse, type_folder

MAX_HOPS = 32


# -- reading ---------------------------------------------------------------------------
# Metafiles read during one bulk call (load_many, check): a model that a thousand links
# point at is read once, not a thousand times. Never active around writes.
_bulk_reads: ContextVar[dict[str, Future[MlemObject | None]] | None] = ContextVar(
    "mlemremote_bulk_reads", default=None
)


# While planning (see `_bulk.run_batched`), a metafile not in that cache is not read:
# `NotReadYet` asks the caller to read it, with many others at once, and to try again.
_planning: ContextVar[bool] = ContextVar("mlemremote_planning", default=False)


class NotReadYet(Exception):
    """Raised while planning a bulk call: the metafile at `loc` must be read first."""

    def __init__(self, loc: Location) -> None:
        super().__init__(str(loc))
        self.loc = loc


@contextmanager
def shared_reads() -> Iterator[None]:
    """Within this block, each metafile is read at most once (read-only calls only)."""
    token = _bulk_reads.set({})
    try:
        yield
    finally:
        _bulk_reads.reset(token)


@contextmanager
def planning() -> Iterator[None]:
    """Within `shared_reads`: raise `NotReadYet` instead of reading a metafile."""
    token = _planning.set(True)
    try:
        yield
    finally:
        _planning.reset(token)


def read_key(loc: Location) -> str:
    return f"{loc}|{id(loc.fs)}"


def read_object(loc: Location) -> MlemObject | None:
    """The object in the metafile at `loc` (one GET), or None when there is none."""
    cache = _bulk_reads.get()
    if cache is None:
        return _read_object(loc)
    key = read_key(loc)
    if _planning.get() and key not in cache:
        raise NotReadYet(loc)
    obj = single_flight(cache, key, lambda: _read_object(loc))
    return None if obj is None else obj.model_copy()  # callers may change their copy


def keep_read(loc: Location, answer: Answer) -> None:
    """Keep a read made elsewhere (in a batch) for this bulk call, parsed, as if
    `read_object` had made it; its error, if any, is kept and raised to its readers."""
    cache = _bulk_reads.get()
    if cache is None:
        return

    def parsed() -> MlemObject | None:
        if isinstance(answer, MlemError):
            raise answer
        return _parsed(loc, answer)

    with suppress(MlemError):
        single_flight(cache, read_key(loc), parsed)


def _read_object(loc: Location) -> MlemObject | None:
    return _parsed(loc, store_for(loc).read(loc))


def _parsed(loc: Location, blob: Blob | None) -> MlemObject | None:
    if blob is None:
        return None
    obj = parse(blob.data, str(loc))
    obj._location, obj._token, obj._version = loc, blob.token, blob.version
    return obj


def _candidates(loc: Location, repo_given: bool, prefer: str | None) -> Iterator[Location]:
    """Where the metafile of `loc` may be, cheapest guess first; a repo is only looked up
    (with requests) after the direct guess missed. `prefer`: the type folder to try first
    after the direct guess (MLEM names objects in `.mlem/<type>/` by name alone)."""
    has_ext = loc.fullpath.endswith(MLEM_EXT) and posixpath.basename(loc.fullpath) != MLEM_DIR
    base = loc.fullpath[: -len(MLEM_EXT)] if has_ext else loc.fullpath
    direct = loc.sibling(base + MLEM_EXT, repo=loc._repo, same_version=True)

    def in_folders(repo: str | None, folders: tuple[str, ...]) -> Iterator[Location]:
        if repo is None or not is_inside(base, repo) or base == repo:
            return
        name = relpath(base, repo)
        if MLEM_DIR in name.split("/"):
            return
        for folder in folders:
            path = join(repo, MLEM_DIR, folder, name + MLEM_EXT)
            yield loc.sibling(path, repo=repo, same_version=True)

    if repo_given and not has_ext:
        # A name in a repo is most often an alias: look in .mlem/link/ first.
        yield from in_folders(loc.repo, TYPE_FOLDERS[:1])
        yield direct
        yield from in_folders(loc.repo, TYPE_FOLDERS[1:])
    else:
        yield direct
        folders: tuple[str, ...] = TYPE_FOLDERS
        if prefer in folders:
            folders = (prefer, *(f for f in folders if f != prefer))
        yield from in_folders(direct.repo, folders)


def find_meta(
    loc: Location,
    *,
    repo_given: bool = False,
    chain: list[str] | None = None,
    prefer: str | None = None,
) -> MlemObject:
    """Load the object that `loc` names (a metafile, or an object name in a repo).

    `chain`: metafiles already visited while following links; naming one of them again
    raises `LinkCycleError` before it is read a second time.
    """
    tried: list[str] = []
    for candidate in _candidates(loc, repo_given, prefer):
        key = str(candidate)
        if chain is not None and key in chain:
            raise LinkCycleError([*chain, key])
        tried.append(key)
        obj = read_object(candidate)
        if obj is not None:
            return obj
    raise MlemObjectNotFound(f"no MLEM object at {loc}", tried)


def link_target(link: MlemLink) -> Location:
    """Where `link` points, resolved against the metafile it was loaded from (and at the
    link's `rev`, when it has one)."""
    if link._points_to is not None:
        return link._points_to
    loc = _target(link, link.location)
    return at_revision(loc, link.rev) if link.rev is not None else loc


MAX_NAME_BYTES = 1024  # S3's and GCS's limit on a key; Azure's is the same order
_WINDOWS_PATH = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


def check_link_field(value: str, what: str, where: str) -> None:
    """A link's `path` or `repo` must be a plain, bounded, POSIX path or URI."""
    if not value.strip() or "\x00" in value:
        raise InvalidLinkError(f"{where}: {what} {value!r} is empty or holds a NUL byte")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"{where}: {what} is longer than {MAX_NAME_BYTES} bytes")
    if _WINDOWS_PATH.match(value):
        raise InvalidLinkError(f"{where}: {what} {value!r} is a Windows path")


def _check_destination(uri: str, base: Location | None, where: str) -> None:
    """Where a link may lead: an allowed scheme; a local path only from local links."""
    scheme = split_scheme(uri)[0] or "file"
    allowed = current_settings().link_schemes | {"memory"}
    if base is not None and scheme == base.scheme and base.scheme != "file":
        allowed = allowed | {base.scheme}  # e.g. links inside a repo served over http
    if scheme not in allowed:
        raise InvalidLinkError(f"{where}: links to {scheme}:// are not allowed: {uri}")
    remote_base = base is not None and not base.is_local and base.scheme != "memory"
    if scheme == "file" and remote_base and not current_settings().allow_local_links:
        raise InvalidLinkError(
            f"{where}: a link on a remote backend names a local path ({uri}); "
            "configure(allow_local_links=True) to follow it"
        )


def _target(link: MlemLink, base: Location | None) -> Location:
    where = _name(link)
    check_link_field(link.path, "path", where)
    if link.repo is not None:
        check_link_field(link.repo, "repo", where)
        if split_scheme(link.repo)[0] is not None:  # scheme-less: MLEM's same-bucket form
            _check_destination(link.repo, base, where)
        return _repo_link_target(link, link.repo, base)
    scheme, _ = split_scheme(link.path)
    if scheme is not None:
        _check_destination(link.path, base, where)
        return resolve(link.path, like=base)
    if base is None:
        return resolve(link.path)  # an unsaved link: relative to the working directory
    if link.path.startswith("/"):
        if base.is_local or base.scheme == "memory":
            return base.sibling(posixpath.normpath(link.path))
        _check_destination(link.path, base, where)  # refused unless local links are allowed
        return resolve(link.path)
    folder = posixpath.dirname(base.fullpath)
    if not link.path.startswith(("./", "../")):  # ours are marked: relative to the link
        repo = base.repo
        if repo is not None:  # MLEM's rule: relative to the repo root
            full = join(repo, link.path)
            if not is_inside(full, repo):
                raise InvalidLinkError(f"{base}: path {link.path!r} leaves the repo")
            return base.sibling(full, repo=repo)
        if base.bucket and link.path.split("/", 1)[0] == base.bucket != "/":
            folder = ""  # MLEM on object stores wrote `bucket/key` without the scheme
    full = join(folder, link.path)
    known_repo = base._repo if base._repo is not _UNKNOWN else repo_from_path(base.fullpath)
    if known_repo is not None and not is_inside(full, known_repo):
        raise InvalidLinkError(f"{base}: path {link.path!r} leaves the repo")
    if not is_inside(full, base.bucket):
        raise InvalidLinkError(f"{base}: path {link.path!r} leaves {base.uri_of(base.bucket)}")
    return base.sibling(full)


def _repo_link_target(link: MlemLink, repo: str, base: Location | None) -> Location:
    scheme, _ = split_scheme(repo)
    if scheme is None and base is not None and not base.is_local:
        # MLEM on object stores wrote `bucket/path` without the scheme: same filesystem.
        repo_loc = base.sibling(posixpath.normpath(repo.lstrip("/")), repo=None)
    else:
        if scheme is None and base is not None and not repo.startswith("/"):
            repo = join(posixpath.dirname(base.fullpath), repo)
        repo_loc = resolve(repo, like=base)
    if split_scheme(link.path)[0] is not None or link.path.startswith("/"):
        raise InvalidLinkError(f"{_name(link)}: with 'repo', 'path' must be repo-relative")
    full = join(repo_loc.fullpath, link.path)
    if not is_inside(full, repo_loc.fullpath):
        raise InvalidLinkError(f"{_name(link)}: path {link.path!r} leaves repo {repo}")
    return repo_loc.sibling(full, repo=repo_loc.fullpath)


def _name(obj: MlemObject) -> str:
    return str(obj.location) if obj.location is not None else f"unsaved {obj.object_type}"


def walk(start: MlemObject, *, follow_links: bool = True) -> tuple[MlemObject, list[str]]:
    """Follow links from `start`; the object reached and the chain of metafiles visited.

    Each hop checks `link_type` against what it finds; at most `MAX_HOPS` hops.
    """
    objects = walk_all(start, follow_links=follow_links)
    return objects[-1], [_name(obj) for obj in objects]


def walk_all(start: MlemObject, *, follow_links: bool = True) -> list[MlemObject]:
    """`start` and every object reached from it, in order (see `walk`)."""
    chain = [_name(start)]
    objects = [start]
    obj = start
    while isinstance(obj, MlemLink):
        target = link_target(obj)
        found = find_meta(target, chain=chain, prefer=type_folder(obj.link_type))
        chain.append(str(found.location))
        if len(chain) - 1 > MAX_HOPS:
            raise LinkChainTooLongError(chain, MAX_HOPS)
        _check_type(obj, found)
        objects.append(found)
        obj = found
        if not follow_links:
            break
    return objects


def _check_type(link: MlemLink, found: MlemObject) -> None:
    if type_folder(found.resolved_type) != type_folder(link.link_type):
        kind = (
            f"a link to a {found.resolved_type}"
            if isinstance(found, MlemLink)
            else f"a {found.object_type}"
        )
        raise WrongMetaType(
            f"{_name(link)} has link_type {link.link_type!r} but {found.location} is {kind}"
        )


def load(
    loc: Location,
    *,
    repo_given: bool,
    follow_links: bool = True,
    force_type: type[MlemObject] | None = None,
) -> MlemObject:
    """The object `loc` names, followed to the end of its chain (`load_meta`'s core).
    A miss in a repo that is not one raises `MlemRootNotFound`."""
    try:
        obj = find_meta(loc, repo_given=repo_given)
    except MlemObjectNotFound:
        if repo_given:  # say so when the repo itself is the problem
            require_repo(loc.sibling(loc.repo or "", repo=None))
        raise
    if follow_links and isinstance(obj, MlemLink):
        obj, _ = walk(obj)
    check_force_type(obj, force_type)
    return obj


def follow(
    link: MlemLink,
    *,
    follow_links: bool = True,
    force_type: type[MlemObject] | None = None,
) -> MlemObject:
    obj, _ = walk(link, follow_links=follow_links)
    check_force_type(obj, force_type)
    return obj


def check_force_type(obj: MlemObject, force_type: type[MlemObject] | None) -> None:
    if force_type is not None and not isinstance(obj, force_type):
        raise WrongMetaType(f"{_name(obj)} is a {obj.object_type}, not a {force_type.__name__}")


# -- writing ---------------------------------------------------------------------------
def check_name(name: str, what: str = "target") -> str:
    """A name inside a repo: relative, inside the repo, not in `.mlem/`, not a folder.
    Returns it without its `.mlem` extension."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise InvalidLinkError(f"{what} {name!r} is not a valid name")
    if name.endswith("/"):
        raise InvalidLinkError(f"{what} {name!r} ends with '/': name a file, not a folder")
    if split_scheme(name)[0] is not None or name.startswith("/"):
        raise InvalidLinkError(f"{what} {name!r} must be a name inside the repo, not a path or URI")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"{what} is longer than {MAX_NAME_BYTES} bytes")
    if _WINDOWS_PATH.match(name) or "\\" in name:
        raise InvalidLinkError(f"{what} {name!r} is a Windows path")
    parts = name.split("/")
    if ".." in parts or "." in parts or "" in parts:
        raise InvalidLinkError(f"{what} {name!r} must not contain '.', '..' or '//'")
    if MLEM_DIR in parts:
        raise InvalidLinkError(f"{what} {name!r} would land inside {MLEM_DIR}/")
    return name[: -len(MLEM_EXT)] if name.endswith(MLEM_EXT) else name


def target_location(
    path: str,
    repo: str | None,
    external: bool | None,
    type_folder: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Location:
    """Where `dump` writes: `<path>.mlem`, or in `repo` (`.mlem/<type>/` unless external)."""
    if repo is not None:
        name = check_name(path)
        repo_loc = resolve(repo, storage_options=storage_options)
        require_repo(repo_loc)
        folder = repo_loc.fullpath if external else join(repo_loc.fullpath, MLEM_DIR, type_folder)
        return repo_loc.sibling(join(folder, name + MLEM_EXT), repo=repo_loc.fullpath)
    if not isinstance(path, str) or path.endswith("/"):
        raise InvalidLinkError(f"target {path!r} ends with '/': name a file, not a folder")
    check_link_field(path, "target", "link()")
    loc = resolve(path, storage_options=storage_options)
    key = loc.fullpath.split("/", 1)[-1]  # the object key, below the bucket
    if loc.scheme in BUCKET_SCHEMES and len(key.encode()) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"target {loc} is longer than {MAX_NAME_BYTES} bytes")
    parts = loc.fullpath.split("/")
    if MLEM_DIR in parts[:-1]:
        inside = parts[len(parts) - 1 - parts[::-1].index(MLEM_DIR) :]
        if len(inside) < 3 or inside[1] != type_folder or MLEM_DIR in inside[2:]:
            raise InvalidLinkError(
                f"target {path!r} would land in {MLEM_DIR}/ outside {MLEM_DIR}/{type_folder}/"
            )
    if not loc.fullpath.endswith(MLEM_EXT):
        loc = loc.sibling(loc.fullpath + MLEM_EXT)
    return loc


def require_repo(repo_loc: Location) -> None:
    """Raise `MlemRootNotFound` unless `repo_loc` holds `.mlem/config.yaml` (one GET)."""
    config = repo_loc.sibling(join(repo_loc.fullpath, MLEM_DIR, CONFIG_FILE), repo=None)
    if read_bytes(config) is None:
        raise MlemRootNotFound(f"{repo_loc} is not a repo: {config} is missing (run init)")


def write_object(obj: MlemObject, target: Location) -> None:
    written = store_for(target).write(target, obj.to_yaml().encode(), Expect.ANY)
    obj._location, obj._token, obj._version = target, written.token, written.version


def link_to(obj: MlemObject, at: Location | None = None) -> MlemLink:
    """An unsaved link to a saved object (at location `at`, e.g. a pinned version), in
    its absolute form."""
    src = at or obj.location
    if src is None:
        raise MlemObjectNotSavedError("cannot link to an object that is not saved")
    fields = _absolute_fields(src)
    link = MlemLink(
        link_type=obj.resolved_type,
        path=fields["path"],
        repo=fields.get("repo"),
        rev=fields.get("rev"),
    )
    link._points_to = src
    return link


def _absolute_fields(src: Location) -> dict[str, str]:
    if src.git_root is not None:
        repo = src.repo
        fields = {"repo": src.uri_of(repo if repo is not None else ""), "path": src.path}
    elif src.repo is not None:
        fields = {"repo": src.repo_uri or "", "path": src.path}
    else:
        fields = {"path": src.uri}
    return {**fields, "rev": src.rev} if src.rev is not None else fields


def _relative_fields(src: Location, dest: Location, absolute: bool) -> dict[str, str]:
    """MLEM's rules: same repo -> repo-relative; no repo on either side and same bucket ->
    relative to the link's folder (marked `./` or `../`); anything else -> absolute."""
    if absolute or src.rev is not None or not src.same_storage(dest):
        return _absolute_fields(src)
    src_repo, dest_repo = src.repo, dest.repo
    if src_repo is not None:
        if src_repo == dest_repo:
            return {"path": src.path}
        return _absolute_fields(src)
    if dest_repo is not None:
        return _absolute_fields(src)
    rel = relpath(src.fullpath, posixpath.dirname(dest.fullpath))
    return {"path": rel if rel.startswith("../") else "./" + rel}


# How often a plain (unconditional) link write looks again when the alias keeps changing
# between its read and its conditional write.
_PLAIN_WRITE_ATTEMPTS = 8


def write_link(
    link: MlemLink,
    target: Location,
    *,
    absolute: bool = False,
    expected: MlemLink | str | None = None,
) -> None:
    """Write `link` at `target`. An existing link is replaced, anything else is kept.

    Every write is conditional on what was read, so a model that appears meanwhile is
    never overwritten. With `expected` (the link as loaded before, or its token) the write
    is a compare-and-swap: `AliasChangedError` when the alias changed since.
    """
    if link._points_to is not None:
        if str(link._points_to) == str(target):
            raise InvalidLinkError(f"{target}: a link cannot point at itself")
        fields = _relative_fields(link._points_to, target, absolute)
        link.path, link.repo, link.rev = fields["path"], fields.get("repo"), fields.get("rev")
    # A YAML comment with a write id (ignored by every reader, MLEM included) makes each
    # write's bytes unique: a write whose answer was lost is recognised as ours, and S3
    # ETags (content MD5s) change with every move, so compare-and-swap sees A -> B -> A.
    data = (link.to_yaml() + f"# mlemremote write {uuid.uuid4().hex[:16]}\n").encode()
    store = store_for(target)
    token: Expected
    if expected is not None:
        token = _expected_token(expected, target)
        try:
            written = store.write(target, data, token)
        except WriteConflict as exc:
            raise AliasChangedError(
                f"{target} changed since it was read; nothing was written"
            ) from exc
    else:
        for _ in range(_PLAIN_WRITE_ATTEMPTS):
            token = _current_link_token(target)
            try:
                written = store.write(target, data, token)
                break
            except WriteConflict:
                continue  # another writer moved the alias between our read and write
        else:
            raise AliasChangedError(f"{target} kept changing; nothing was written")
    link._location, link._token, link._version = target, written.token, written.version
    _log_move(link, target, written.version, previous=token)


def _expected_token(expected: MlemLink | str, target: Location) -> Expected:
    if isinstance(expected, MlemLink):
        if expected.location is None or str(expected.location) != str(target):
            raise InvalidLinkError(
                f"expected= must be the link at {target} as loaded, not {_name(expected)}"
            )
        if expected._token is None:
            raise InvalidLinkError("expected= link carries no version token: load it first")
        return expected._token
    # A bare token: make sure it is a link that we would replace, not a model.
    if _current_link_token(target) == Expect.ABSENT:
        raise AliasChangedError(f"{target} does not exist; nothing was written")
    return expected


def _current_link_token(target: Location) -> Expected:
    """The token of the link at `target` (Expect.ABSENT when there is none); raises
    `ObjectExistsError` when something other than a link is there."""
    blob = store_for(target).read(target)
    if blob is None:
        return Expect.ABSENT
    try:
        current = parse(blob.data, str(target))
    except Exception as exc:
        raise ObjectExistsError(
            f"{target} exists and is not a link; it was left untouched"
        ) from exc
    if not isinstance(current, MlemLink):
        raise ObjectExistsError(
            f"{target} is a {current.object_type}, not a link; it was left untouched"
        )
    return blob.token


# -- history -----------------------------------------------------------------------------
def history_folder(target: Location) -> Location | None:
    """Where the append-only log of moves of the link at `target` lives (in its repo's
    `.mlem/history/`), or None outside a repo."""
    repo = target.repo
    if repo is None:
        return None
    rel = relpath(target.fullpath, repo)
    prefix = f"{MLEM_DIR}/link/"
    key = "link/" + rel[len(prefix) :] if rel.startswith(prefix) else "external/" + rel
    return target.sibling(join(repo, HISTORY_PREFIX, key), repo=repo)


def _log_move(link: MlemLink, target: Location, version: str | None, *, previous: Expected) -> None:
    """Append one entry per move where the bucket keeps no versions of its own; it names
    the token it replaced, so a lost update would show as two entries with one parent."""
    store = store_for(target)
    if store.keeps_versions(target, version):
        return
    folder = history_folder(target)
    if folder is None:
        return
    now = datetime.now(timezone.utc)
    entry = {
        "time": now.isoformat(),
        "link": link.to_dict(),
        "token": link._token,
        "previous": None if isinstance(previous, Expect) else previous,
    }
    name = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.yaml"
    log = folder.sibling(join(folder.fullpath, name), repo=folder._repo)
    data = yaml.safe_dump(entry, sort_keys=True, default_flow_style=False).encode()
    store.write(log, data, Expect.ABSENT)  # never rewritten


def pinned_location(obj: MlemObject) -> Location:
    """Where `obj` is, at the version it has now: the git commit (the file must be
    committed), or the object version that was read (the bucket must keep versions)."""
    loc = obj.loc
    if loc.rev is not None:
        return loc
    if loc.is_local:
        return at_revision(loc, _git_head_of(loc))
    store = store_for(loc)
    if obj._version is None or not store.keeps_versions(loc, obj._version):
        raise RevisionNotSupportedError(
            f"pin=True: {store.describe(loc)} keeps no versions of {loc} "
            "(use a versioned bucket or a git repository)"
        )
    return at_revision(loc, obj._version)


def _git_head_of(loc: Location) -> str:
    try:
        import pygit2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RevisionNotSupportedError("pin=True on local disk needs pygit2") from exc
    gitdir = pygit2.discover_repository(posixpath.dirname(loc.fullpath))
    if gitdir is None:
        raise RevisionNotSupportedError(
            f"pin=True: local disk keeps no versions and {loc} is not in a git repository"
        )
    repository = pygit2.Repository(gitdir)
    rel = relpath(loc.fullpath, repository.workdir.rstrip("/"))
    if repository.head_is_unborn or repository.status_file(rel) != pygit2.GIT_STATUS_CURRENT:
        raise RevisionNotSupportedError(
            f"pin=True: {loc} has changes that are not committed; commit them first"
        )
    return str(repository.head.target)


@dataclass(frozen=True)
class HistoryEntry:
    """One place an alias pointed to: when, the link as written, and its version id."""

    time: datetime
    link: MlemLink
    version: str | None
    # From the log only: the token of the link this move replaced (None for a creation).
    previous: str | None = None


def history_of(target: Location) -> list[HistoryEntry]:
    """The moves of the link at `target`, newest first (see `api.history`)."""
    store = store_for(target)
    entries: list[HistoryEntry] = []
    if store.versioned(target):
        for version in store.versions(target):
            if version.deleted:
                continue
            obj = read_object(at_revision(target, version.version))
            if isinstance(obj, MlemLink):
                entries.append(HistoryEntry(version.time, _unsaved(obj), version.version))
        return entries
    folder = history_folder(target)
    if folder is None:
        raise MlemRootNotFound(
            f"{target} is not in a repo and {store.describe(target)} keeps no versions: "
            "there is no history"
        )
    for name in sorted(_list_names(folder), reverse=True):
        blob = store.read(folder.sibling(join(folder.fullpath, name), repo=folder._repo))
        if blob is None:
            continue
        entry = yaml.safe_load(blob.data)
        link = MlemLink.model_validate(entry["link"])
        time = datetime.fromisoformat(entry["time"])
        entries.append(HistoryEntry(time, link, entry.get("token"), entry.get("previous")))
    return entries


def _unsaved(link: MlemLink) -> MlemLink:
    copy = link.model_copy()
    copy._location = None
    return copy


def _list_names(folder: Location) -> list[str]:
    fs = folder.fs
    try:
        fs.invalidate_cache(folder.fullpath)
        found = fs.ls(folder.fullpath, detail=False)
    except FileNotFoundError:
        return []
    names = [posixpath.basename(str(p).rstrip("/")) for p in found]
    return [n for n in names if n.endswith(".yaml")]
