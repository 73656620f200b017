"""Finding metafiles, following links, and writing links and objects.

This module knows metafiles only through the `build` function it is handed (in
practice `core.objects.build`, which turns a mapping read from YAML into a `MlemObject`):
it sits below the object classes, whose MLEM methods (`dump`, `load_link`,
`make_link`) call into it, so that neither imports the other in a circle.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol, TypeGuard, TypeVar, cast
from urllib.parse import unquote

from mlemremote import _history, _policy, _yaml
from mlemremote._location import (
    Location,
    at_revision,
    confined,
    is_repo_root,
    require_bucket,
    resolve,
    single_flight,
)
from mlemremote._paths import (
    BUCKET_SCHEMES,
    CONFIG_FILE,
    MLEM_DIR,
    MLEM_EXT,
    is_inside,
    join,
    relpath,
    split_scheme,
)
from mlemremote._redact import redact
from mlemremote._remotes import Remotes
from mlemremote._remotes import current as current_remotes
from mlemremote._settings import current as current_settings
from mlemremote._stores import (
    Answer,
    Blob,
    Expect,
    Expected,
    WriteConflict,
    git,
    read_bytes,
    read_many,
    store_for,
)
from mlemremote.core.errors import (
    AliasChangedError,
    AmbiguousObjectError,
    InvalidArgumentError,
    InvalidLinkError,
    LinkChainTooLongError,
    LinkCycleError,
    MlemError,
    MlemObjectNotFound,
    MlemObjectNotSavedError,
    MlemRootNotFound,
    NotAFileError,
    ObjectExistsError,
    RevisionNotSupportedError,
    WrongMetaType,
)

MAX_HOPS = 32
logger = logging.getLogger("mlemremote")
TYPE_FOLDERS = ("link", "model", "dataset", "env", "deployment", "packager")


class Meta(Protocol):
    """What this module needs of a metadata object (`core.objects.MlemObject` is one)."""

    _location: Location | None
    _token: str | None
    _version: str | None
    _modified: datetime | None

    @property
    def object_type(self) -> str: ...

    @property
    def resolved_type(self) -> str: ...

    @property
    def location(self) -> Location | None: ...

    def to_yaml(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class Link(Meta, Protocol):
    """What this module needs of a link (`core.objects.MlemLink` is one)."""

    path: str
    repo: str | None
    rev: str | None
    link_type: str
    _points_to: Location | None


ObjT = TypeVar("ObjT", bound=Meta)
# Turns a mapping read from a metafile into an object; raises `MlemError` otherwise.
Build = Callable[[Mapping[str, Any], str], ObjT]


def is_link(obj: Meta) -> TypeGuard[Link]:
    return obj.object_type == "link"


def type_folder(object_type: str) -> str:
    """The `.mlem/<folder>/` of an object type (`data` and `dataset` share one)."""
    return "dataset" if object_type == "data" else object_type


# -- reading ---------------------------------------------------------------------------
# Metafiles read during one bulk call (load_many, check): a model that a thousand links
# point at is read once, not a thousand times. Never active around writes.
_bulk_reads: ContextVar[dict[str, Future[Any]] | None] = ContextVar(
    "mlemremote_bulk_reads", default=None
)


# While planning (see `_bulk.run_batched`), a metafile not in that cache is not read:
# `NotReadYet` asks the caller to read it, with many others at once, and to try again.
_planning: ContextVar[bool] = ContextVar("mlemremote_planning", default=False)
# Within `capturing`: every metafile read (or missed), by URI, with where and what it was.
_captured: ContextVar[dict[str, tuple[Location, Blob | None]] | None] = ContextVar(
    "mlemremote_captured", default=None
)


@contextmanager
def capturing() -> Iterator[dict[str, tuple[Location, Blob | None]]]:
    """Within this block, keep every metafile read (None: a place looked at and found
    empty) with its location and the blob it gave, by URI: what a watch polls."""
    seen: dict[str, tuple[Location, Blob | None]] = {}
    token = _captured.set(seen)
    try:
        yield seen
    finally:
        _captured.reset(token)


class NotReadYet(Exception):
    """Raised while planning a bulk call: the metafiles at `locs` must be read first."""

    def __init__(self, *locs: Location) -> None:
        super().__init__(", ".join(map(str, locs)))
        self.locs = locs


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


def read_object(loc: Location, build: Build[ObjT]) -> ObjT | None:
    """The object in the metafile at `loc` (one GET), or None when there is none."""
    cache = _bulk_reads.get()
    if cache is None:
        return parsed(loc, store_for(loc).read(loc), build)
    key = read_key(loc)
    if _planning.get() and key not in cache:
        raise NotReadYet(loc)
    obj: ObjT | None = single_flight(
        cache, key, lambda: parsed(loc, store_for(loc).read(loc), build)
    )
    return None if obj is None else obj.model_copy()  # type: ignore[attr-defined]


def keep_read(loc: Location, answer: Answer, build: Build[ObjT]) -> None:
    """Keep a read made elsewhere (in a batch) for this bulk call, parsed, as if
    `read_object` had made it; its error, if any, is kept and raised to its readers."""
    cache = _bulk_reads.get()
    if cache is None:
        return

    def parse() -> ObjT | None:
        if isinstance(answer, MlemError):
            raise answer
        return parsed(loc, answer, build)

    with suppress(MlemError):
        single_flight(cache, read_key(loc), parse)


def parsed(loc: Location, blob: Blob | None, build: Build[ObjT]) -> ObjT | None:
    """The object a read found (None: no file), remembering where and as what it was read."""
    seen = _captured.get()
    if seen is not None:
        seen[str(loc)] = (loc, blob)
    if blob is None:
        return None
    content = _yaml.load(blob.data, str(loc))
    obj = build(content, str(loc))
    obj._location, obj._token, obj._version = loc, blob.token, blob.version
    obj._modified = blob.modified
    return obj


def _direct(loc: Location) -> Location:
    """The metafile a path names directly: `<path>.mlem` (or the path, when it ends so)."""
    has_ext = loc.fullpath.endswith(MLEM_EXT) and posixpath.basename(loc.fullpath) != MLEM_DIR
    base = loc.fullpath if has_ext else loc.fullpath + MLEM_EXT
    return loc.sibling(base, repo=loc._repo, same_version=True)


def _in_type_folders(direct: Location, repo: str | None) -> list[Location]:
    """MLEM's second guess: `<repo>/.mlem/<type>/<path in repo>.mlem`, one per type."""
    if repo is None or not is_inside(direct.fullpath, repo):
        return []
    name = relpath(direct.fullpath, repo)
    if MLEM_DIR in name.split("/"):
        return []
    return [
        direct.sibling(join(repo, MLEM_DIR, folder, name), repo=repo, same_version=True)
        for folder in TYPE_FOLDERS
    ]


_Found = Any  # a parsed object, None (no such file) or the MlemError its read raised


def _read_candidates(locs: list[Location], build: Build[ObjT]) -> list[_Found]:
    """Read every candidate at once where the store allows it (the latency of one read):
    each answer is the object, None, or the error that reading it raised."""
    cache = _bulk_reads.get()
    if cache is not None and _planning.get():
        unread = [loc for loc in locs if read_key(loc) not in cache]
        if unread:
            raise NotReadYet(*unread)
    answers = read_many(locs, len(locs)) if cache is None and len(locs) > 1 else {}
    found: list[_Found] = []
    for index, loc in enumerate(locs):
        try:
            if index in answers:
                answer = answers[index]
                if isinstance(answer, MlemError):
                    raise answer
                found.append(parsed(loc, answer, build))
            else:
                found.append(read_object(loc, build))
        except MlemError as exc:
            found.append(exc)
    return found


def find_meta(
    loc: Location,
    build: Build[ObjT],
    *,
    chain: list[str] | None = None,
    shadows: bool = False,
) -> ObjT:
    """Load the object that `loc` names, in MLEM's order: the path itself (`<path>.mlem`),
    then `<repo>/.mlem/<type>/<path>.mlem`.

    As in MLEM, a name found in two type folders is refused (`AmbiguousObjectError`), and
    the path wins over a type folder. With `shadows` (a name the caller gave), the type
    folders are read too, at once with the path when the repo is known without a
    request: an object the path hides is named in a warning.
    (`check` finds hidden objects from its listing, for every link hop.) Otherwise the
    type folders are read only after the path missed, and the repo looked up only then.

    `chain`: metafiles already visited while following links (so `loc` is a link's
    target): naming one of them again raises `LinkCycleError` before it is read a second
    time, and on local disk no file is read that a symlink places outside the link's
    repo, whichever name (`x`, `x.mlem`, `.mlem/<type>/x.mlem`) it is found under.
    """
    direct = _direct(loc)
    known = direct.known_repo if shadows else None
    folders = _in_type_folders(direct, known)
    tried = [str(direct), *map(str, folders)]
    answers = _answers([direct, *folders], build, chain)
    first = answers[0]
    if first is not None:
        if isinstance(first, MlemError):
            raise first
        _note_shadows(direct, known, list(zip(folders, answers[1:], strict=True)))
        return cast(ObjT, first)
    if not folders:  # the repo is looked up now (a request per folder, shared in the call)
        folders = _in_type_folders(direct, direct.repo if known is None else known)
        tried += map(str, folders)
        answers = [None, *_answers(folders, build, chain)]
    hits = [(c, a) for c, a in zip(folders, answers[1:], strict=True) if a is not None]
    if len(hits) > 1:  # (a link already followed counts too: MLEM refuses it as well)
        raise AmbiguousObjectError(
            f"{loc} names {len(hits)} objects, and MLEM refuses such a name too: "
            + ", ".join(str(c) for c, _ in hits)
            + "; rename or remove all but one"
        )
    if hits:
        if isinstance(hits[0][1], MlemError):
            raise hits[0][1]
        return cast(ObjT, hits[0][1])
    require_bucket(direct)  # a mistyped bucket is named as such, not as a missing file
    raise MlemObjectNotFound(f"no MLEM object at {loc}", tried)


def _answers(
    candidates: list[Location], build: Build[ObjT], chain: list[str] | None
) -> list[_Found]:
    """What each candidate holds. One already in `chain` is not read again: it exists,
    and choosing it is a cycle; one that a symlink leads out of the repo is not read (and
    counts only when something is there)."""
    blocked: dict[int, MlemError | None] = {}
    for index, candidate in enumerate(candidates):
        key = str(candidate)
        if chain is None:
            continue
        if key in chain:
            blocked[index] = LinkCycleError([*chain, key])
        repo = candidate._repo
        if isinstance(repo, str) and not confined(candidate, repo):
            there = os.path.lexists(candidate.fullpath)  # (only local disk has symlinks)
            blocked[index] = (
                InvalidLinkError(f"{chain[-1]}: {key} is a symlink that leads out of the repo")
                if there
                else None
            )
    readable = [c for i, c in enumerate(candidates) if i not in blocked]
    read = iter(_read_candidates(readable, build) if readable else [])
    return [blocked[i] if i in blocked else next(read) for i in range(len(candidates))]


def _note_shadows(
    direct: Location, repo: str | None, others: list[tuple[Location, _Found]]
) -> None:
    """Warn about the objects of the same name that the path hides (MLEM's index link to
    the path itself, `.mlem/link/<path>.mlem`, hides nothing)."""
    if repo is None:
        return
    name = relpath(direct.fullpath, repo)
    shadowed = [
        str(candidate)
        for candidate, answer in others
        if answer is not None
        and not isinstance(answer, LinkCycleError)
        and not is_index_link(answer, name)
    ]
    if shadowed:
        logger.warning(
            redact(
                f"{direct} hides {', '.join(shadowed)}: MLEM and mlemremote both read the "
                "former for this name; rename one of them"
            )
        )


def link_target(link: Link) -> Location:
    """Where `link` points, resolved against the metafile it was loaded from (and at the
    link's `rev`, when it has one)."""
    if link._points_to is not None:
        return link._points_to
    loc = _target(link, link.location)
    return at_revision(loc, link.rev) if link.rev is not None else loc


MAX_NAME_BYTES = 1024  # S3's and GCS's limit on a key; Azure's is the same order
_WINDOWS_PATH = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


def check_link_field(value: str, what: str, where: str) -> None:
    """A link's `path` or `repo` must be a plain, bounded, POSIX path or URI without
    credentials in it."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise InvalidLinkError(
            f"{where}: {what} {_yaml.describe_value(value)} is empty or holds a NUL byte"
        )
    if len(value.encode(errors="replace")) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"{where}: {what} is longer than {MAX_NAME_BYTES} bytes")
    if _WINDOWS_PATH.match(value):
        raise InvalidLinkError(f"{where}: {what} {_yaml.describe_value(value)} is a Windows path")
    if value.encode(errors="replace") != value.encode(errors="surrogatepass") or any(
        ord(c) < 0x20 or ord(c) == 0x7F for c in value
    ):
        raise InvalidLinkError(
            f"{where}: {what} {_yaml.describe_value(value)} holds control characters or is not text"
        )
    _policy.refuse_secrets(value)


def _plain(path: str) -> str:
    """`path` as a server may read it: percent-decoding undone, backslashes as slashes.
    Containment is checked on this form too, so `%2e%2e/` cannot climb out."""
    return unquote(path).replace("\\", "/")


def _inside(full: str, folder: str, plain_full: str) -> bool:
    return is_inside(full, folder) and is_inside(plain_full, folder)


def _target(link: Link, base: Location | None) -> Location:
    where = _name(link)
    check_link_field(link.path, "path", where)
    if base is not None and base.git_root is not None:
        _stay_in_revision(link, base, where)
    if link.repo is not None:
        spec = git.parse_git_url(link.repo, link.rev, whole=True)  # (github:// has '@')
        check_link_field(link.repo, "repo", where)
        if spec is not None:
            _check_git_destination(spec.repo, base, where)
        elif split_scheme(link.repo)[0] is not None:  # scheme-less: MLEM's same-bucket form
            _check_destination(link.repo, base, where)
        return _repo_link_target(link, link.repo, base, spec is not None)
    scheme, _ = split_scheme(link.path)
    if scheme is not None:
        spec = git.parse_git_url(link.path, link.rev, whole=False)
        if spec is not None:
            _check_git_destination(spec.repo, base, where)
            return resolve(link.path, rev=link.rev)
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
            if not _inside(full, repo, join(repo, _plain(link.path))):
                raise InvalidLinkError(f"{base}: path {_show(link.path)} leaves the repo")
            return base.sibling(full, repo=repo)
        if base.bucket and link.path.split("/", 1)[0] == base.bucket != "/":
            folder = ""  # MLEM on object stores wrote `bucket/key` without the scheme
    full = join(folder, link.path)
    plain_full = join(folder, _plain(link.path))
    if not _inside(full, base.bucket, plain_full):
        raise InvalidLinkError(f"{base}: path {_show(link.path)} leaves {base.uri_of(base.bucket)}")
    # (A `./` link is looked up in a repo too: one probe per folder up to the bucket,
    # shared in the call. Unmarked paths reach here only outside repos.)
    repo = base.repo
    if repo is not None:
        if not _inside(full, repo, plain_full):
            raise InvalidLinkError(f"{base}: path {_show(link.path)} leaves the repo")
        mlem_reads = join(repo, link.path)  # MLEM joins any relative path to the repo root
        if mlem_reads != full:
            raise InvalidLinkError(
                f"{base}: path {_show(link.path)} is read by MLEM relative to the repo root "
                f"({base.uri_of(mlem_reads)}) and by mlemremote relative to the link's folder "
                f"({base.uri_of(full)}): the tools would load different files, so it is "
                "refused; write the link again"
            )
        return base.sibling(full, repo=repo)  # confined to it, symlinks too (`find_meta`)
    top = posixpath.commonpath([folder, full, plain_full]) if folder else ""
    if not _inside(full, folder, plain_full):
        # It climbs: it must not climb out of a repo on its way up. Only the folders it
        # climbs out of can be that repo's root (one probe each, shared in the call).
        current = folder
        while current != top and current not in ("", "/"):
            if is_repo_root(base, current):
                raise InvalidLinkError(
                    f"{base}: path {_show(link.path)} leaves the repo {base.uri_of(current)}"
                )
            current = posixpath.dirname(current)
    # On disk, no symlink may lead it out of the folders it names either. (Should the
    # direct name miss, the repo is looked up, and `find_meta` confines the rest to it.)
    for name in (full, full if full.endswith(MLEM_EXT) else full + MLEM_EXT):
        if not confined(base.sibling(name), top or "/"):
            raise InvalidLinkError(f"{base}: {name} is a symlink that leads elsewhere")
    return base.sibling(full)


def _show(value: str) -> str:
    return _yaml.describe_value(value, 200)


def _check_destination(uri: str, base: Location | None, where: str) -> None:
    """Where a link may lead: an allowed scheme; a local path only from local links;
    over http(s), its own origin only (see `_policy`)."""
    base_scheme = None if base is None else ("file" if base.is_local else base.scheme)
    _policy.check_destination(uri, base_scheme, None if base is None else base.uri, where)


def _stay_in_revision(link: Link, base: Location, where: str) -> None:
    """A link read from a git revision may lead anywhere by a full URI, but a path
    without one stays in that repository at that revision: no local path from it, no
    other revision of it."""
    scheme = split_scheme(link.repo or link.path)[0]
    if scheme is not None and scheme != "file":
        return
    if scheme == "file" or (link.repo or link.path).startswith("/"):
        raise InvalidLinkError(
            f"{where}: a link in a git revision names a local path "
            f"({_show(link.repo or link.path)}); it may not leave its repository"
        )
    if link.rev is not None and link.rev != base.rev:
        raise InvalidLinkError(
            f"{where}: a link in git revision {base.rev or 'HEAD'} names revision "
            f"{_show(link.rev)} of its own repository; a relative link stays in its revision"
        )


def _check_git_destination(url: str, base: Location | None, where: str) -> None:
    """A link may lead to a remote git repository that a remote of the user's config
    names (by `url` or `insteadof`: the user chose that server); any other goes through
    the scheme and host policy of every link. Refused addresses are refused either way."""
    if (current_remotes() or Remotes()).user_names(url):
        _policy.check_http_address(url, where)
        return
    _check_destination(url, base, where)


def _repo_link_target(
    link: Link, repo: str, base: Location | None, remote_git: bool = False
) -> Location:
    scheme, _ = split_scheme(repo)
    where = _name(link)
    if remote_git:
        return resolve(link.path, repo=repo, rev=link.rev)
    if scheme is None and ".." in _plain(repo).split("/"):
        raise InvalidLinkError(f"{where}: repo {_show(repo)} climbs with '..'")
    if scheme is None and base is not None and not base.is_local:
        # MLEM on object stores wrote `bucket/path` without the scheme: same filesystem.
        repo_loc = base.sibling(posixpath.normpath(repo.lstrip("/")), repo=None)
    else:
        relative = scheme is None and base is not None and not repo.startswith("/")
        if relative and base is not None:
            repo = join(posixpath.dirname(base.fullpath), repo)
        repo_loc = resolve(repo, like=base)
        # A relative `repo:` names a folder of the link's own repo: also for real, not
        # through a symlink that leads out of it.
        own = base.repo if relative and base is not None else None
        if own is not None and not confined(repo_loc, own):
            raise InvalidLinkError(f"{where}: repo {_show(repo)} leads out of the repo")
    if split_scheme(link.path)[0] is not None or link.path.startswith("/"):
        raise InvalidLinkError(f"{where}: with 'repo', 'path' must be repo-relative")
    full = join(repo_loc.fullpath, link.path)
    if not _inside(full, repo_loc.fullpath, join(repo_loc.fullpath, _plain(link.path))):
        raise InvalidLinkError(f"{where}: path {_show(link.path)} leaves repo {repo}")
    return repo_loc.sibling(full, repo=repo_loc.fullpath)


def _name(obj: Meta) -> str:
    return str(obj.location) if obj.location is not None else f"unsaved {obj.object_type}"


def walk(start: Meta, build: Build[ObjT], *, follow_links: bool = True) -> tuple[ObjT, list[str]]:
    """Follow links from `start`; the object reached and the chain of metafiles visited.

    Each hop checks `link_type` against what it finds; at most `MAX_HOPS` hops.
    """
    objects = walk_all(start, build, follow_links=follow_links)
    return objects[-1], [_name(obj) for obj in objects]


def walk_all(start: Meta, build: Build[ObjT], *, follow_links: bool = True) -> list[ObjT]:
    """`start` and every object reached from it, in order (see `walk`). `start` is of
    the family `build` makes (a `MlemLink` for `core.objects.build`)."""
    chain = [_name(start)]
    obj = cast(ObjT, start)
    objects = [obj]
    while is_link(obj):
        target = link_target(obj)
        try:
            found = find_meta(target, build, chain=chain)
        except MlemObjectNotFound as exc:
            if type(exc) is MlemObjectNotFound and _mlem_cwd_relative(obj):
                raise MlemObjectNotFound(
                    f"{_name(obj)}: path {_show(obj.path)} names no MLEM object relative to "
                    "the link's folder. MLEM wrote this path relative to the working "
                    "directory it ran in, which the link does not record; mlemremote "
                    "reads it relative to the link's folder. Write the link again (both "
                    "tools then read an absolute URI)",
                    exc.tried,
                ) from None
            raise
        chain.append(str(found.location))
        if len(chain) - 1 > MAX_HOPS:
            raise LinkChainTooLongError(chain, MAX_HOPS)
        _check_type(obj, found)
        objects.append(found)
        obj = found
        if not follow_links:
            break
    return objects


def _mlem_cwd_relative(link: Link) -> bool:
    """Is `link` in MLEM's form for links outside repos on local disk: a relative path
    without `./` or `../`, which MLEM resolves against its working directory?"""
    base = link.location
    path = link.path
    return (
        base is not None
        and base.is_local
        and link.repo is None
        and link.rev is None
        and split_scheme(path)[0] is None
        and not path.startswith(("/", "./", "../"))
        and base.repo is None
    )


def _check_type(link: Link, found: Meta) -> None:
    if type_folder(found.resolved_type) != type_folder(link.link_type):
        kind = (
            f"a link to a {_yaml.describe_value(found.resolved_type)}"
            if is_link(found)
            else f"a {found.object_type}"
        )
        raise WrongMetaType(
            f"{_name(link)} has link_type {_yaml.describe_value(link.link_type)} but "
            f"{found.location} is {kind}"
        )


def load(
    loc: Location,
    build: Build[ObjT],
    *,
    repo_given: bool,
    follow_links: bool = True,
    force_type: type | None = None,
    shadows: bool = False,
) -> ObjT:
    """The object `loc` names, followed to the end of its chain (`load_meta`'s core).
    A miss in a repo that is not one raises `MlemRootNotFound`."""
    try:
        obj = find_meta(loc, build, shadows=shadows)
    except MlemObjectNotFound:
        if repo_given:  # say so when the repo itself is the problem
            require_repo(loc.sibling(loc.repo or "", repo=None))
        raise
    if follow_links and is_link(obj):
        obj, _ = walk(obj, build)
    check_force_type(obj, force_type)
    return obj


def follow(
    link: Meta, build: Build[ObjT], *, follow_links: bool = True, force_type: type | None = None
) -> ObjT:
    obj, _ = walk(link, build, follow_links=follow_links)
    check_force_type(obj, force_type)
    return obj


def check_force_type(obj: Meta, force_type: type | None) -> None:
    if force_type is not None and not isinstance(force_type, type):
        raise InvalidArgumentError(
            "force_type must be an object class (e.g. MlemModel), not "
            + _yaml.describe_value(force_type)
        )
    if force_type is not None and not isinstance(obj, force_type):
        raise WrongMetaType(f"{_name(obj)} is a {obj.object_type}, not a {force_type.__name__}")


# -- writing ---------------------------------------------------------------------------
def check_name(name: str, what: str = "target") -> str:
    """A name inside a repo: relative, inside the repo, not in `.mlem/`, not a folder.
    Returns it without its `.mlem` extension."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise InvalidLinkError(f"{what} {_yaml.describe_value(name)} is not a valid name")
    check_link_field(name, what, "link()")
    if name.endswith("/"):
        raise InvalidLinkError(f"{what} {name!r} ends with '/': name a file, not a folder")
    if split_scheme(name)[0] is not None or name.startswith("/"):
        raise InvalidLinkError(f"{what} {name!r} must be a name inside the repo, not a path or URI")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"{what} is longer than {MAX_NAME_BYTES} bytes")
    if _WINDOWS_PATH.match(name) or "\\" in name:
        raise InvalidLinkError(f"{what} {name!r} is a Windows path")
    parts = name.split("/")
    plain_parts = _plain(name).split("/")
    if any(p in (".", "..", "") for p in parts + plain_parts):
        raise InvalidLinkError(f"{what} {name!r} must not contain '.', '..' or '//'")
    if MLEM_DIR in parts or MLEM_DIR in plain_parts:
        raise InvalidLinkError(f"{what} {name!r} would land inside {MLEM_DIR}/")
    return name[: -len(MLEM_EXT)] if name.endswith(MLEM_EXT) else name


def target_location(
    path: str,
    repo: str | None,
    external: bool | None,
    folder_of_type: str,
    build: Build[Any],
    *,
    storage_options: Mapping[str, Any] | None = None,
    removing: bool = False,
) -> Location:
    """Where `dump` and `link` write, by MLEM's rule: `<path>.mlem` outside repos; in a
    repo (given, or found above `path`), `<repo>/.mlem/<type>/<path in repo>.mlem`
    unless `external` (then `<repo>/<path>.mlem`). See `_visible` for a name that a file
    at `<repo>/<path>.mlem` already takes. `removing`: the alias `unlink` removes (the
    refusals are worded for a removal)."""
    if repo is not None:
        name = check_name(path)
        repo_loc = resolve(repo, storage_options=storage_options)
        require_repo(repo_loc)
        at_path = repo_loc.sibling(join(repo_loc.fullpath, name + MLEM_EXT), repo=repo_loc.fullpath)
        target = _visible(
            at_path, build, folder_of_type, external=bool(external), removing=removing
        )
        if not confined(target, repo_loc.fullpath):
            raise InvalidLinkError(f"{target}: a symlink in the repo leads this write out of it")
        return target
    if not isinstance(path, str) or path.endswith("/"):
        raise InvalidLinkError(
            f"target {_yaml.describe_value(path)} is not a file name (it ends with '/' or "
            "is not a string)"
        )
    check_link_field(path, "target", "unlink" if removing else "link")
    loc = resolve(path, storage_options=storage_options)
    key = loc.fullpath.split("/", 1)[-1]  # the object key, below the bucket
    if loc.scheme in BUCKET_SCHEMES and len(key.encode()) > MAX_NAME_BYTES:
        raise InvalidLinkError(f"target {loc} is longer than {MAX_NAME_BYTES} bytes")
    parts = loc.fullpath.split("/")
    if MLEM_DIR in parts[:-1]:
        inside = parts[len(parts) - 1 - parts[::-1].index(MLEM_DIR) :]
        if len(inside) < 3 or inside[1] != folder_of_type or MLEM_DIR in inside[2:]:
            raise InvalidLinkError(
                f"target {path!r} would land in {MLEM_DIR}/ outside {MLEM_DIR}/{folder_of_type}/"
            )
        return loc if loc.fullpath.endswith(MLEM_EXT) else loc.sibling(loc.fullpath + MLEM_EXT)
    if not loc.fullpath.endswith(MLEM_EXT):
        loc = loc.sibling(loc.fullpath + MLEM_EXT)
    repo = loc.repo  # MLEM's rule: a path inside a repo goes to its `.mlem/<type>/`
    if repo is None:
        return loc
    target = _visible(
        loc.sibling(loc.fullpath, repo=repo),
        build,
        folder_of_type,
        external=bool(external),
        removing=removing,
    )
    if not confined(target, repo):
        raise InvalidLinkError(f"{target}: a symlink in the repo leads this write out of it")
    return target


def _visible(
    at_path: Location, build: Build[Any], folder: str, *, external: bool, removing: bool = False
) -> Location:
    """Where a write for the name at `at_path` (`<repo>/<name>.mlem`) goes: the type
    folder `<repo>/.mlem/<folder>/<name>.mlem`, or `at_path` itself when `external`,
    so that afterwards the name finds what was written, and nothing else changes what a
    name finds. The path and the type folders are read at once (one round trip):

    - into the type folder: a file at the path would hide the write (the lookup, MLEM's
      too, reads the path first): a link there (written by an earlier version, or by
      MLEM with `external`) is the alias this name moves, so it is updated in place, with
      a warning; anything else there is refused. An object of that name in another type
      folder is refused too: the name would become ambiguous (both tools refuse those).
    - at the path (`external`): a new file there would hide an object of that name in a
      type folder (MLEM's index link to this very path aside): refused.

    Refusals raise `ObjectExistsError` before anything is written."""
    repo = cast(str, at_path._repo)
    name = relpath(at_path.fullpath, repo)
    own = at_path.sibling(join(repo, MLEM_DIR, folder, name), repo=repo)
    # (Removing, the alias's own file is read too: is there an alias to remove at all?)
    others = [
        c for c in _in_type_folders(at_path, repo) if external or removing or str(c) != str(own)
    ]
    answers = _read_candidates([at_path, *others], build)
    existing = answers[0]
    if isinstance(existing, NotAFileError):  # a folder or FIFO there: never replaced
        raise ObjectExistsError(f"{at_path} is not a file; the name is taken")
    taken = [
        str(loc)
        for loc, answer in zip(others, answers[1:], strict=True)
        if answer is not None and not is_index_link(answer, name)
    ]
    if external:
        if existing is None and taken:
            raise ObjectExistsError(
                f"{at_path} would hide {', '.join(taken)}: the name would then find the new "
                "file (in MLEM too); choose another name, or write without external=True"
            )
        return at_path
    if existing is not None:
        if not isinstance(existing, MlemError) and is_link(existing) and folder == "link":
            if removing:
                return at_path  # the alias this name finds
            logger.warning(
                redact(
                    f"{at_path} is the alias this name finds (it hides {own}, where MLEM "
                    "would write): it is updated in place"
                )
            )
            return at_path
        if removing:
            raise ObjectExistsError(
                f"the name {name[: -len(MLEM_EXT)]!r} finds {at_path}, which is not a link "
                f"(anything at {own} is hidden behind it: name that one by its URI to "
                "remove it); nothing was removed"
            )
        raise ObjectExistsError(
            f"{at_path} already exists and would hide {own} (MLEM and mlemremote read the "
            f"path first): choose another name, or pass external=True to write at {at_path}"
        )
    if removing:
        alias = next(a for c, a in zip(others, answers[1:], strict=True) if str(c) == str(own))
        taken = [t for t in taken if t != str(own)]
        if taken and alias is None:
            raise ObjectExistsError(
                f"the name {name[: -len(MLEM_EXT)]!r} finds {taken[0]}, which is not a link; "
                "nothing was removed"
            )
        if taken:
            raise ObjectExistsError(
                f"the name {name[: -len(MLEM_EXT)]!r} is ambiguous: it also names "
                f"{', '.join(taken)} (MLEM and mlemremote refuse such names); to remove the "
                f"alias, name it by its URI ({own}); nothing was removed"
            )
        return own
    if taken:
        raise ObjectExistsError(
            f"the name {name[: -len(MLEM_EXT)]!r} already names {', '.join(taken)}: writing "
            f"{own} would make it ambiguous (MLEM and mlemremote refuse such names); choose "
            "another name"
        )
    return own


def is_index_link(answer: _Found, name: str) -> bool:
    """MLEM's index link of an external object: `.mlem/link/<name>` with `path: <name>`."""
    return (
        not isinstance(answer, MlemError)
        and is_link(answer)
        and answer.repo is None
        and answer.rev is None
        and answer.path in (name, name[: -len(MLEM_EXT)])
    )


def require_repo(repo_loc: Location) -> None:
    """Raise `MlemRootNotFound` unless `repo_loc` holds `.mlem/config.yaml` (one GET)."""
    config = repo_loc.sibling(join(repo_loc.fullpath, MLEM_DIR, CONFIG_FILE), repo=None)
    if read_bytes(config) is None:
        require_bucket(config)
        raise MlemRootNotFound(f"{repo_loc} is not a repo: {config} is missing (run init)")


def write_object(obj: Meta, target: Location) -> None:
    written = store_for(target).write(target, obj.to_yaml().encode(), Expect.ANY)
    obj._location, obj._token, obj._version = target, written.token, written.version


def write_index_link(obj: Meta, target: Location, build: Build[Any]) -> None:
    """MLEM's index of an object dumped outside `.mlem/` in a repo (external): a link
    `.mlem/link/<path>.mlem` with `path: <path>.mlem`, so that `mlem ls` lists it (the
    lookup skips it: the path itself is found first). Created only where nothing is: an
    alias of that name is never replaced; a warning then says the object is not indexed."""
    repo = target.repo
    if repo is None or is_link(obj):
        return
    name = relpath(target.fullpath, repo)
    if MLEM_DIR in name.split("/"):
        return
    index = target.sibling(join(repo, MLEM_DIR, "link", name), repo=repo)
    fields = {"object_type": "link", "link_type": obj.resolved_type, "path": name}
    data = build(fields, str(index)).to_yaml().encode()
    try:
        if not confined(index, repo):  # a symlinked folder would lead the write out
            raise InvalidLinkError(f"{index} leads out of the repo")
        store_for(index).write(index, data, Expect.ABSENT)
        return
    except WriteConflict:
        existing = read_object(index, build)
        if existing is not None and is_link(existing) and existing.to_dict() == fields:
            return  # indexed already
    except MlemError:
        pass
    logger.warning(
        redact(f"{target} is not indexed for `mlem ls`: {index} is taken by something else")
    )


def absolute_fields(src: Location) -> dict[str, str]:
    """A link's `path`, `repo` and `rev` that name `src` from anywhere. `repo:` ends with
    `/`, as MLEM writes it."""
    if src.git_root is not None:
        repo = src.repo
        fields = {
            "repo": _repo_field(src.uri_of(repo if repo is not None else "")),
            "path": src.path,
        }
    elif src.repo is not None:
        fields = {"repo": _repo_field(src.repo_uri or ""), "path": src.path}
    else:
        fields = {"path": src.uri}
    return {**fields, "rev": src.rev} if src.rev is not None else fields


def _repo_field(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def _relative_fields(
    src: Location, dest: Location, absolute: bool, folder_relative: bool
) -> dict[str, str]:
    """Same repo -> repo-relative (MLEM's rule), the exact metafile; anything else ->
    absolute, with scheme, which MLEM and mlemremote resolve alike from anywhere. With
    `folder_relative`, a link outside repos to the same bucket is written relative to its
    folder (`./m.mlem`, `../x/m.mlem`): movable with its folder, but MLEM reads such a
    path against its working directory, so MLEM cannot use it."""
    if absolute or src.rev is not None or not src.same_storage(dest):
        return absolute_fields(src)
    src_repo, dest_repo = src.repo, dest.repo
    if src_repo is not None:
        if src_repo == dest_repo:
            # The metafile's exact path (`.mlem/link/latest.mlem`), not MLEM's name form
            # (`latest.mlem`): MLEM reads it directly too, and no file added later, nor
            # an object of the same name in another type folder, can take it over.
            return {"path": src.path}
        return absolute_fields(src)
    if dest_repo is not None or not folder_relative:
        return absolute_fields(src)
    rel = relpath(src.fullpath, posixpath.dirname(dest.fullpath))
    return {"path": rel if rel.startswith("../") else "./" + rel}


# How often a plain (unconditional) link write looks again when the alias keeps changing
# between its read and its conditional write.
_PLAIN_WRITE_ATTEMPTS = 8


def check_expected(expected: object) -> None:
    """`expected=` must be a link loaded with `follow_links=False`, or a token string:
    anything else is refused before anything is read or written."""
    if expected is None or (isinstance(expected, str) and expected):
        return
    if isinstance(expected, str):
        raise InvalidLinkError("the expected token is an empty string: give the alias's token")
    kind = getattr(expected, "object_type", None)
    if kind == "link":
        if getattr(expected, "location", None) is None:
            raise InvalidLinkError("expected= is a link that was never loaded: load it first")
        return
    hint = " (load the alias with follow_links=False)" if isinstance(kind, str) else ""
    raise InvalidLinkError(
        f"expected= must be the link as loaded with follow_links=False, or its token "
        f"(a string), not {type(expected).__name__}{hint}; nothing was written"
    )


def write_link(
    link: Link,
    target: Location,
    build: Build[Any],
    *,
    absolute: bool = False,
    folder_relative: bool = False,
    expected: object = None,
    message: str | None = None,
) -> None:
    """Write `link` at `target`. An existing link is replaced, anything else is kept.
    The move records who made it (the `author` setting) and `message`, in the link's
    comment lines and its history entry.

    Every write is conditional on what was read, so a model that appears meanwhile is
    never overwritten. With `expected` (the link as loaded before, or its token) the write
    is a compare-and-swap: `AliasChangedError` when the alias changed since; with
    `Expect.ABSENT` (a rollback of a removed alias) it is create-only.
    """
    if expected is not Expect.ABSENT:
        check_expected(expected)
    if link._points_to is not None:
        if str(link._points_to) == str(target):
            raise InvalidLinkError(f"{target}: a link cannot point at itself")
        fields = _relative_fields(link._points_to, target, absolute, folder_relative)
        link.path, link.repo, link.rev = fields["path"], fields.get("repo"), fields.get("rev")
    for value, what in ((link.path, "path"), (link.repo, "repo")):
        if value is not None:
            check_link_field(value, what, f"link to write at {target}")
    # A YAML comment with a write id (ignored by every reader, MLEM included) makes each
    # write's bytes unique: a write whose answer was lost is recognised as ours, and S3
    # ETags (content MD5s) change with every move, so compare-and-swap sees A -> B -> A.
    # Comments before it say who made the move and why (each version keeps its own).
    author = _history.author_now()
    body = link.to_yaml()
    data = (body + _history.audit_comment(target, body, author, message)).encode()
    limit = current_settings().max_metafile_bytes
    if len(data) > limit:  # (a long message, escaped: up to 12 bytes a character)
        raise InvalidArgumentError(
            f"the link to write at {target} would be {len(data)} bytes, over the "
            f"{limit}-byte cap for metafiles that every read applies (a shorter message?); "
            "nothing was written"
        )
    store = store_for(target)
    try:
        if expected is not None:
            token, replaced = (
                (Expect.ABSENT, None)
                if expected is Expect.ABSENT
                else _expected_token(expected, target, build)
            )
            try:
                written = store.write(target, data, token)
            except WriteConflict as exc:
                raise AliasChangedError(
                    f"{target} changed since it was read; nothing was written"
                ) from exc
        else:
            for _ in range(_PLAIN_WRITE_ATTEMPTS):
                token, replaced = _current_link(target, build)
                try:
                    written = store.write(target, data, token)
                    break
                except WriteConflict:
                    continue  # another writer moved the alias between our read and write
            else:
                raise AliasChangedError(f"{target} kept changing; nothing was written")
    except NotAFileError as exc:  # what appeared there is not a file: never replaced
        raise ObjectExistsError(f"{target} is not a file; it was left untouched") from exc
    link._location, link._token, link._version = target, written.token, written.version
    _history.log_move(
        link,
        target,
        token=written.token,
        version=written.version,
        previous=None if isinstance(token, Expect) else token,
        replaced=replaced,
        author=author,
        message=message,
    )


def remove_link(
    target: Location, build: Build[Any], *, expected: object = None, message: str | None = None
) -> Link:
    """Remove the link at `target` and record the removal in its history; returns the
    link that was there. Anything that is not a link is never removed (`ObjectExistsError`,
    untouched); nothing there raises `MlemObjectNotFound`.

    The deletion is conditional on the token just read (see each store's `delete`), so a
    model written there meanwhile is never deleted. With `expected` (the link as loaded
    before, or its token) it is a compare-and-swap: `AliasChangedError` when the alias
    changed since.
    """
    check_expected(expected)
    store = store_for(target)
    try:
        for _ in range(_PLAIN_WRITE_ATTEMPTS):
            token, replaced = _current_link(target, build)
            if isinstance(token, Expect) or replaced is None:
                raise MlemObjectNotFound(f"no link to remove at {target}", [str(target)])
            if expected is not None:
                wanted: Expected = (
                    expected
                    if isinstance(expected, str)
                    else _expected_token(expected, target, build)[0]
                )
                if not same_token(wanted, token):
                    if isinstance(expected, str):
                        raise _not_its_token(target, expected, token, "removed")
                    raise AliasChangedError(
                        f"{target} changed since it was read; nothing was removed"
                    )
            try:
                done = store.delete(target, token)
                break
            except WriteConflict as exc:
                if expected is not None:
                    raise AliasChangedError(
                        f"{target} changed since it was read; nothing was removed"
                    ) from exc
                continue  # it moved between our read and the delete: look again
        else:
            raise AliasChangedError(f"{target} kept changing; nothing was removed")
    except NotAFileError as exc:  # what appeared there is not a file: never removed
        raise ObjectExistsError(f"{target} is not a file; it was left untouched") from exc
    _history.log_removal(
        target,
        version=done.version,
        previous=token,
        replaced=replaced,
        author=_history.author_now(),
        message=message,
    )
    removed = cast(Link, build(replaced, str(target)))
    removed._location = target
    return removed


def _expected_token(
    expected: object, target: Location, build: Build[Any]
) -> tuple[Expected, dict[str, Any] | None]:
    """The token a compare-and-swap compares against, and what that link says."""
    if isinstance(expected, str):
        # A bare token: make sure it is a link that we would replace, not a model.
        token, replaced = _current_link(target, build)
        if token == Expect.ABSENT:
            raise AliasChangedError(f"{target} does not exist; nothing was written")
        if not same_token(token, expected):
            raise _not_its_token(target, expected, token, "written")
        return token, replaced  # (as the store spells it: the condition it compares)
    expected = cast(Link, expected)  # check_expected let only links through
    if expected.location is not None and _same_name(expected.location, target):
        # The name now finds another file (a link appeared at `<repo>/<name>.mlem`, which
        # hides `.mlem/link/<name>.mlem`, or went away): the alias changed since.
        raise AliasChangedError(
            f"{target} is now the alias this name finds, not {expected.location} as loaded; "
            "nothing was written"
        )
    if expected.location is None or str(expected.location) != str(target):
        raise InvalidLinkError(
            f"expected= must be the link at {target} as loaded, not {_name(expected)}"
        )
    if expected._token is None:
        raise InvalidLinkError("expected= link carries no version token: load it first")
    return expected._token, expected.to_dict()


def same_token(a: object, b: object) -> bool:
    """Two spellings of one token: S3 and Azure ETags are quoted (`"abc"`), and a token
    typed in a shell loses its quotes."""
    if isinstance(a, str) and isinstance(b, str):
        return a.strip('"') == b.strip('"')
    return a == b


def _not_its_token(target: Location, given: str, now: Expected, verb: str) -> AliasChangedError:
    """A token given as a string that is not the alias's: it moved since, or the string
    is something else (a version id, a typo): say both, and what the token is now."""
    return AliasChangedError(
        f"{target} has token {now!r} now, not {given!r}: it changed since that token was "
        f"read, or that is not its token (the alias's `.token`, or `mlemremote show "
        f"--no-follow --json`); "
        f"nothing was {verb}"
    )


def _same_name(a: Location, b: Location) -> bool:
    """Two different metafiles that one name in one repo may find: `<repo>/<name>.mlem`
    and `<repo>/.mlem/<type>/<name>.mlem`."""
    repo = b._repo
    if str(a) == str(b) or not isinstance(repo, str) or not a.same_storage(b):
        return False
    if not (is_inside(a.fullpath, repo) and is_inside(b.fullpath, repo)):
        return False

    def name(loc: Location) -> str:
        parts = relpath(loc.fullpath, repo).split("/")
        return "/".join(parts[2:] if parts[0] == MLEM_DIR and len(parts) > 2 else parts)

    return name(a) == name(b)


def _current_link(target: Location, build: Build[Any]) -> tuple[Expected, dict[str, Any] | None]:
    """The token of the link at `target` and what it says (Expect.ABSENT, None when
    there is none); raises `ObjectExistsError` when something other than a link is there."""
    try:
        blob = store_for(target).read(target)
    except NotAFileError as exc:  # a folder, FIFO, socket, ... is never replaced
        raise ObjectExistsError(f"{target} is not a file; it was left untouched") from exc
    if blob is None:
        return Expect.ABSENT, None
    try:
        current = parsed(target, blob, build)
    except MlemError as exc:
        raise ObjectExistsError(
            f"{target} exists and is not a link; it was left untouched"
        ) from exc
    if current is None or not is_link(current):
        kind = "nothing" if current is None else current.object_type
        raise ObjectExistsError(f"{target} is a {kind}, not a link; it was left untouched")
    return blob.token, current.to_dict()


def pinned_location(obj: Meta) -> Location:
    """Where `obj` is, at the version it has now: the git commit (the file must be
    committed), or the object version that was read (the bucket must keep versions)."""
    loc = obj.location
    if loc is None:
        raise MlemObjectNotSavedError("pin=True needs a saved object")
    if loc.git_root is not None:  # a branch or tag: the commit it has now
        return at_revision(loc, str(git.commit_object(loc.fs.repo, loc.fs.ref, str(loc)).id))
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
