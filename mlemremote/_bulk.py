"""Many metafiles at once: `load_many`, listing a repo, checking every link under a prefix.

The work for each path (find the metafile, follow its links) runs in rounds in the
calling thread: a round runs every unfinished path until it needs a metafile that was not
read yet, then reads all the metafiles that round asked for at once, as coroutines
gathered on the backend's event loop (bounded; one GET each; a thread pool for stores
without coroutine reads). N links to one model cost two rounds and N + 1 GETs; a metafile
is read at most once per call. Errors are collected per path; one bad link never aborts
the batch.
"""

from __future__ import annotations

import contextvars
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from mlemremote import _links
from mlemremote._foreign import to_mlem_error
from mlemremote._location import Location, anchor_remotes, require_bucket, resolve
from mlemremote._paths import HISTORY_PREFIX, MLEM_DIR, MLEM_EXT, is_inside, join, relpath
from mlemremote._stores import read_many, store_for
from mlemremote.core.errors import (
    BucketNotFoundError,
    GitRepoNotFoundError,
    InvalidArgumentError,
    InvalidLinkError,
    LinkChainTooLongError,
    LinkCycleError,
    MlemError,
    MlemObjectNotFound,
    MlemRootNotFound,
    NotAFileError,
    StorageError,
    WrongMetaType,
)
from mlemremote.core.objects import MlemLink, MlemObject, build

T = TypeVar("T")
R = TypeVar("R")


def run_concurrently(
    items: Sequence[T], work: Callable[[T], R], concurrency: int
) -> Iterator[tuple[int, R]]:
    """(index, result) as each item completes; each task runs in a copy of this context
    (the call's shared repo probes and remotes)."""
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items) or 1))) as pool:
        futures: dict[Future[R], int] = {
            pool.submit(contextvars.copy_context().run, work, item): i
            for i, item in enumerate(items)
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_batched(
    items: Sequence[T], work: Callable[[T], R], concurrency: int
) -> Iterator[tuple[int, R]]:
    """(index, `work(item)`) for every item, as each finishes (see the module's doc).

    `work` must only read, and report its errors in its result: it is run again from the
    start after each round of reads, and now finds those metafiles read.
    """
    pending = list(range(len(items)))
    with _links.shared_reads():
        while pending:
            wanted: dict[str, Location] = {}
            waiting: list[int] = []
            for index in pending:
                try:
                    with _links.planning():
                        result = work(items[index])
                except _links.NotReadYet as need:
                    for loc in need.locs:
                        wanted.setdefault(_links.read_key(loc), loc)
                    waiting.append(index)
                    continue
                yield index, result
            _read_all(list(wanted.values()), concurrency)
            pending = waiting


def _read_all(locs: list[Location], concurrency: int) -> None:
    """Read `locs` into the bulk call's cache: all at once where the store allows it; the
    rest, and any read that failed in the batch, one by one (with retries) in threads."""
    answers = read_many(locs, concurrency)
    for index, answer in answers.items():
        _links.keep_read(locs[index], answer, build)
    rest = [loc for index, loc in enumerate(locs) if index not in answers]

    def read(loc: Location) -> None:
        with suppress(MlemError):  # kept in the cache for the path that wants it
            _links.read_object(loc, build)

    for _ in run_concurrently(rest, read, concurrency):
        pass


def load_many(
    paths: Sequence[str],
    repo: str | None = None,
    *,
    rev: str | None = None,
    follow_links: bool = True,
    force_type: type[MlemObject] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    concurrency: int = 32,
) -> list[MlemObject | MlemError]:
    """Like `load_meta` for each path; the results in order, an error in place of each
    object that could not be loaded."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise InvalidArgumentError(f"load_many takes a list of paths, not {type(paths).__name__}")
    locations: list[Location | MlemError] = []
    for path in paths:
        try:
            loc = resolve(path, repo, rev, storage_options=storage_options)
        except Exception as exc:  # one bad path is one error in its place
            locations.append(to_mlem_error(exc, f"load_many({path!r:.100})"))
            continue
        anchor_remotes(loc)  # as load_meta does: the first repo named (no request)
        locations.append(loc)

    def load(loc: Location | MlemError) -> MlemObject | MlemError:
        if isinstance(loc, MlemError):
            return loc
        try:
            return _links.load(
                loc,
                build,
                repo_given=repo is not None,
                follow_links=follow_links,
                force_type=force_type,
            )
        except _links.NotReadYet:
            raise
        except Exception as exc:
            return to_mlem_error(exc, f"load_many({loc})")

    results: list[MlemObject | MlemError] = [MlemError("not loaded")] * len(paths)
    for index, result in run_batched(locations, load, concurrency):
        results[index] = result
    return results


def metafiles_under(loc: Location) -> list[Location]:
    """Every metafile below `loc` (one listing), leaving out the history log."""
    store = store_for(loc)
    files = store.listing(loc)
    if [f.rstrip("/") for f in files] == [loc.fullpath.rstrip("/")]:
        # (`find` on a file names the file: a typo such as `check repo/.mlem/config.yaml`
        # must not pass as a folder without links)
        raise InvalidArgumentError(f"{loc} is a file, not a folder or prefix")
    if not files:  # a typo must not read as an empty repo
        require_bucket(loc, "list")
        if not store.folder_exists(loc):
            raise MlemObjectNotFound(f"no such folder or prefix: {loc}")
    return [
        loc.sibling(path)
        for path in sorted(files)
        if path.endswith(MLEM_EXT) and HISTORY_PREFIX not in path
    ]


@dataclass(frozen=True)
class CheckResult:
    """One metafile's fate: `status` is ok, external (a link that leaves the repo),
    shadowed (hidden: its name finds another metafile first, in MLEM too), ambiguous (its
    name is in two `.mlem/<type>/` folders: neither tool loads it by name), dangling,
    cycle, type-mismatch or invalid. All but the first three are broken."""

    uri: str
    status: str
    detail: str = ""

    @property
    def broken(self) -> bool:
        return self.status not in ("ok", "external", "shadowed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "status": self.status,
            "broken": self.broken,
            "detail": self.detail,
        }

    def line(self) -> str:
        return f"{self.status:<13} {self.uri}" + (f"  {self.detail}" if self.detail else "")


def _names_in_repo(files: list[Location], repo: str | None) -> dict[str, list[str]]:
    """name in the repo -> the metafiles it may find, in MLEM's order (the path, then
    the type folders), from the listing."""
    names: dict[str, list[str]] = {}
    if repo is None:
        return names
    for loc in files:
        if not is_inside(loc.fullpath, repo):
            continue
        parts = relpath(loc.fullpath, repo).split("/")
        if parts[0] == MLEM_DIR and len(parts) > 2 and parts[1] in _links.TYPE_FOLDERS:
            names.setdefault("/".join(parts[2:]), []).append(loc.fullpath)
        elif MLEM_DIR not in parts:
            names.setdefault("/".join(parts), []).insert(0, loc.fullpath)
    return names


def _hidden(
    loc: Location, obj: MlemObject | None, repo: str | None, names: dict[str, list[str]]
) -> CheckResult | None:
    """A `shadowed` or `ambiguous` result for a metafile in `.mlem/<type>/` that its name
    cannot reach; None for every other metafile. (MLEM's index link to an external
    object, `.mlem/link/<path>.mlem` with `path: <path>.mlem`, hides nothing.)"""
    if repo is None or not is_inside(loc.fullpath, join(repo, MLEM_DIR)):
        return None
    name = "/".join(relpath(loc.fullpath, repo).split("/")[2:])
    found = names.get(name, [])
    direct = join(repo, name)
    if obj is not None and _links.is_index_link(obj, name):
        return None
    if found and found[0] == direct:
        return CheckResult(
            str(loc),
            "shadowed",
            f"hidden by {loc.uri_of(direct)}: the name {name[: -len(MLEM_EXT)]!r} finds that "
            "one, in MLEM too",
        )
    if len(found) > 1:
        others = ", ".join(loc.uri_of(f) for f in found if f != loc.fullpath)
        return CheckResult(
            str(loc),
            "ambiguous",
            f"the name {name[: -len(MLEM_EXT)]!r} is also {others}: MLEM and mlemremote "
            "refuse to load it by name",
        )
    return None


_STATUS: list[tuple[type[MlemError], str]] = [
    (LinkCycleError, "cycle"),
    (LinkChainTooLongError, "cycle"),
    (WrongMetaType, "type-mismatch"),
    (MlemObjectNotFound, "dangling"),
    (BucketNotFoundError, "dangling"),
    (GitRepoNotFoundError, "dangling"),
    (InvalidLinkError, "invalid"),
    (MlemError, "invalid"),
]


@dataclass(frozen=True)
class Entry:
    """One metafile as a survey found it: `obj` is what it holds (or why it could not be
    read; None when it vanished meanwhile), `hidden` its shadowed/ambiguous result if
    its name cannot reach it, `final` where a reachable link leads (or why it does not)."""

    loc: Location
    name: str  # relative to the surveyed folder
    obj: MlemObject | MlemError | None
    hidden: CheckResult | None = None
    final: Location | MlemError | None = None

    def check_result(self, root: Location, repo: str | None) -> CheckResult | None:
        """What `check` says of it; None for an object that is not a link."""
        if isinstance(self.obj, MlemError):
            return _failed(self.loc, self.obj)
        if self.hidden is not None or not isinstance(self.obj, MlemLink):
            return self.hidden
        if isinstance(self.final, MlemError):
            return _failed(self.loc, self.final)
        end = cast(Location, self.final)
        inside = repo is not None and end.same_storage(root) and is_inside(end.fullpath, repo)
        return CheckResult(str(self.loc), "external" if repo and not inside else "ok", f"-> {end}")


def _about_content(error: MlemError) -> MlemError:
    """An error that says something about a metafile (invalid, dangling, a folder where a
    file should be, a missing bucket a link names), returned to be reported; one that
    says we could not look (denied, unreachable, out of time) is raised: the whole survey
    fails (exit 2), never a link called broken, nor a listing that looks complete."""
    if isinstance(error, StorageError) and not isinstance(
        error, (BucketNotFoundError, GitRepoNotFoundError, NotAFileError)
    ):
        raise error
    return error


def _failed(loc: Location, error: MlemError) -> CheckResult:
    status = next(name for cls, name in _STATUS if isinstance(error, cls))
    return CheckResult(str(loc), status, str(error))


@dataclass
class Survey:
    """Every metafile below `root`: `total` of them, `entries` yields `(index, Entry)`
    as each is done (in rounds, see the module's doc), so a progress bar can count."""

    root: Location
    repo: str | None  # the repo the names are read in, if the folder is in one
    total: int
    entries: Iterator[tuple[int, Entry]]

    @property
    def outcomes(self) -> Iterator[CheckResult | None]:
        """What `check` says of each metafile as it is done (None: not a link)."""
        return (entry.check_result(self.root, self.repo) for _, entry in self.entries)

    @property
    def results(self) -> Iterator[CheckResult]:
        return (result for result in self.outcomes if result is not None)


def survey(
    prefix: str,
    *,
    rev: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    concurrency: int = 32,
    repo_only: bool = False,
) -> Survey:
    """Read every metafile below `prefix` (at `rev`; with `repo_only`, in the whole repo
    that `prefix` is in) with one listing, find which names cannot reach theirs
    (shadowed, ambiguous), and follow every reachable link to its end, all in one bulk
    scope: each metafile is read once, however many links lead to it."""
    root = resolve(prefix, rev=rev, storage_options=storage_options)
    if repo_only:  # the repo `prefix` is in (it, or a folder above it), as `mlem ls` reads it
        found = root.repo
        if found != root.fullpath:  # a typo or a file is named as such (no such bucket...)
            metafiles_under(root)
        if found is None:
            raise MlemRootNotFound(
                f"{root} is in no repo (no .mlem/ there or above): name a repo, or run "
                "`mlemremote init` there"
            )
        root = root.sibling(found, repo=found, same_version=True)
    files = metafiles_under(root)
    repo = root.repo if MLEM_DIR not in root.fullpath.split("/") else None
    if repo is not None:
        anchor_remotes(root.sibling(repo, repo=repo))
    names = _names_in_repo(files, repo)

    def look(loc: Location) -> Entry:
        name = posixpath.relpath(loc.fullpath, root.fullpath)
        try:
            obj = _links.read_object(loc, build)
        except _links.NotReadYet:
            raise
        except Exception as exc:
            return Entry(loc, name, _about_content(to_mlem_error(exc, f"read {loc}")))
        hidden = _hidden(loc, obj, repo, names)
        if hidden is not None or not isinstance(obj, MlemLink):
            return Entry(loc, name, obj, hidden)
        try:
            final: Location | MlemError = _links.walk(obj, build)[0].loc
        except _links.NotReadYet:
            raise
        except Exception as exc:
            final = _about_content(to_mlem_error(exc, f"follow {loc}"))
        return Entry(loc, name, obj, None, final)

    return Survey(root, repo, len(files), run_batched(files, look, concurrency))
