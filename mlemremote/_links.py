"""Finding metafiles, following links, and writing links and objects."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

from mlemremote._location import (
    CONFIG_FILE,
    MLEM_DIR,
    MLEM_EXT,
    Location,
    at_revision,
    is_inside,
    join,
    relpath,
    resolve,
    split_scheme,
)
from mlemremote._storage import read_bytes, write_bytes
from mlemremote.core.errors import (
    InvalidLinkError,
    LinkChainTooLongError,
    LinkCycleError,
    MlemObjectNotFound,
    MlemObjectNotSavedError,
    MlemRootNotFound,
    ObjectExistsError,
    WrongMetaType,
)
from mlemremote.core.objects import TYPE_FOLDERS, MlemLink, MlemObject, parse, type_folder

MAX_HOPS = 32


# -- reading ---------------------------------------------------------------------------
def read_object(loc: Location) -> MlemObject | None:
    """The object in the metafile at `loc` (one GET), or None when there is none."""
    data = read_bytes(loc)
    if data is None:
        return None
    obj = parse(data, str(loc))
    obj._location = loc
    return obj


def _candidates(loc: Location, repo_given: bool, prefer: str | None) -> Iterator[Location]:
    """Where the metafile of `loc` may be, cheapest guess first; a repo is only looked up
    (with requests) after the direct guess missed. `prefer`: the type folder to try first
    after the direct guess (MLEM names objects in `.mlem/<type>/` by name alone)."""
    has_ext = loc.fullpath.endswith(MLEM_EXT) and posixpath.basename(loc.fullpath) != MLEM_DIR
    base = loc.fullpath[: -len(MLEM_EXT)] if has_ext else loc.fullpath
    direct = loc.sibling(base + MLEM_EXT, repo=loc._repo)

    def in_folders(repo: str | None, folders: tuple[str, ...]) -> Iterator[Location]:
        if repo is None or not is_inside(base, repo) or base == repo:
            return
        name = relpath(base, repo)
        if MLEM_DIR in name.split("/"):
            return
        for folder in folders:
            yield loc.sibling(join(repo, MLEM_DIR, folder, name + MLEM_EXT), repo=repo)

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
    """Where `link` points, resolved against the metafile it was loaded from."""
    if link._points_to is not None:
        return link._points_to
    base = link.location
    if link.repo is not None:
        return _repo_link_target(link, link.repo, base)
    if link.rev is not None:
        raise InvalidLinkError(f"{_name(link)}: 'rev' needs 'repo'")
    scheme, _ = split_scheme(link.path)
    if scheme is not None:
        return resolve(link.path, like=base)
    if base is None:
        return resolve(link.path)  # an unsaved link: relative to the working directory
    if link.path.startswith("/"):
        if base.is_local or base.scheme == "memory":
            return base.sibling(posixpath.normpath(link.path))
        raise InvalidLinkError(f"{base}: a link on {base.scheme}:// holds a local path")
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
    loc = repo_loc.sibling(full, repo=repo_loc.fullpath)
    return at_revision(loc, link.rev) if link.rev is not None else loc


def _name(obj: MlemObject) -> str:
    return str(obj.location) if obj.location is not None else f"unsaved {obj.object_type}"


def walk(start: MlemObject, *, follow_links: bool = True) -> tuple[MlemObject, list[str]]:
    """Follow links from `start`; the object reached and the chain of metafiles visited.

    Each hop checks `link_type` against what it finds; at most `MAX_HOPS` hops.
    """
    chain = [_name(start)]
    obj = start
    while isinstance(obj, MlemLink):
        target = link_target(obj)
        found = find_meta(target, chain=chain, prefer=type_folder(obj.link_type))
        chain.append(str(found.location))
        if len(chain) - 1 > MAX_HOPS:
            raise LinkChainTooLongError(chain, MAX_HOPS)
        _check_type(obj, found)
        obj = found
        if not follow_links:
            break
    return obj, chain


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
    loc = resolve(path, storage_options=storage_options)
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
    write_bytes(target, obj.to_yaml().encode(), create_only=False)
    obj._location = target


def link_to(obj: MlemObject) -> MlemLink:
    """An unsaved link to a saved object, in its absolute form."""
    if obj.location is None:
        raise MlemObjectNotSavedError("cannot link to an object that is not saved")
    fields = _absolute_fields(obj.location)
    link = MlemLink(
        link_type=obj.resolved_type,
        path=fields["path"],
        repo=fields.get("repo"),
        rev=fields.get("rev"),
    )
    link._points_to = obj.location
    return link


def _absolute_fields(src: Location) -> dict[str, str]:
    if src.git_root is not None:
        repo = src.repo
        fields = {
            "repo": src.uri_of(repo if repo is not None else ""),
            "path": src.path,
        }
        return {**fields, "rev": src.rev} if src.rev is not None else fields
    if src.repo is not None:
        return {"repo": src.repo_uri or "", "path": src.path}
    return {"path": src.uri}


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


def write_link(link: MlemLink, target: Location, *, absolute: bool = False) -> None:
    """Write `link` at `target`; an existing link is replaced, anything else is kept."""
    if link._points_to is not None:
        if str(link._points_to) == str(target):
            raise InvalidLinkError(f"{target}: a link cannot point at itself")
        fields = _relative_fields(link._points_to, target, absolute)
        link.path, link.repo, link.rev = fields["path"], fields.get("repo"), fields.get("rev")
    existing = read_bytes(target)
    if existing is not None:
        try:
            current = parse(existing, str(target))
        except Exception as exc:
            raise ObjectExistsError(
                f"{target} exists and is not a link; it was left untouched"
            ) from exc
        if not isinstance(current, MlemLink):
            raise ObjectExistsError(
                f"{target} is a {current.object_type}, not a link; it was left untouched"
            )
    write_bytes(target, link.to_yaml().encode(), create_only=existing is None)
    link._location = target
