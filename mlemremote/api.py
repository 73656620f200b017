"""The public API, at MLEM's import path: `link`, `load_meta`, `init`.

>>> import tempfile, os
>>> from mlemremote.api import init, link, load_meta
>>> from mlemremote.core.objects import MlemModel
>>> repo = tempfile.mkdtemp()
>>> init(repo)
>>> _ = MlemModel(model_type={"type": "sklearn"}).dump("models/rf", repo=repo, external=True)
>>> link("models/rf", source_repo=repo, target="latest", target_repo=repo).path
'models/rf.mlem'
>>> type(load_meta("latest", repo=repo)).__name__
'MlemModel'
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from mlemremote import _artifacts, _bulk, _history, _links, _location
from mlemremote._artifacts import ArtifactFile, Pulled
from mlemremote._boundary import public, public_bulk
from mlemremote._bulk import CheckResult
from mlemremote._history import HistoryEntry
from mlemremote._location import Location, anchor_remotes, resolve
from mlemremote._paths import CONFIG_FILE, MLEM_DIR, join
from mlemremote._policy import refuse_secrets
from mlemremote._settings import Settings, configured
from mlemremote._settings import configure as _configure
from mlemremote._stores import Expect, WriteConflict, store_for
from mlemremote._watch import Watch, WatchEvent
from mlemremote.core.errors import (
    InvalidArgumentError,
    InvalidLinkError,
    MlemError,
    MlemObjectNotFound,
    MlemObjectNotSavedError,
    MlemRootNotFound,
    StorageError,
)
from mlemremote.core.objects import MlemLink, MlemObject, build

StorageOptions = Mapping[str, Any]


resolve_location = public(_location.resolve)  # the package root's `resolve`


@public
def explain_storage_options(
    path: str, repo: str | None = None, *, storage_options: StorageOptions | None = None
) -> _location.Explanation:
    """The storage options `path` (in `repo`) would be opened with, and the source of each
    (the call, your remote, the repo's remote, fsspec's configuration, the default, the
    SDK's environment), secrets masked; `.problem` names a conflict a call would raise.
    A `path` outside `repo` is taken as a link target read from it (its remotes apply).

    >>> from mlemremote.api import explain_storage_options
    >>> found = explain_storage_options("s3://bucket/m", storage_options={"endpoint_url": "http://x"})
    >>> [(r.option, r.value, r.source) for r in found.rows if r.option == "endpoint_url"][0]
    ('endpoint_url', 'http://x', "the call's storage options (storage_options= / -o)")
    """
    return _location.explain_options(path, repo, storage_options=storage_options)


def _check_flags(**flags: object) -> None:
    """True/False arguments must be booleans (None where it means "MLEM's default")."""
    for name, value in flags.items():
        if not isinstance(value, bool) and not (name == "external" and value is None):
            raise InvalidArgumentError(f"{name} must be True or False, not {value!r:.60}")


def _finite(number: float) -> bool:
    """Is `number` finite, also as a float (a whole number may be too large for one)?"""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _check_concurrency(concurrency: object) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(
            f"concurrency must be a whole number >= 1, not {concurrency!r:.60}"
        )


@public
def configure(**changes: Any) -> Settings:
    """Change settings for this process; returns the previous ones. Unknown names and
    values out of range raise `SettingsError`.

    >>> from mlemremote.api import configure
    >>> previous = configure(retry_attempts=3, max_metafile_bytes=64 * 1024)
    >>> _ = configure(**previous.__dict__)
    """
    return _configure(**changes)


@public_bulk
def load_many(
    paths: Sequence[str],
    repo: str | None = None,
    *,
    rev: str | None = None,
    follow_links: bool = True,
    force_type: type[MlemObject] | None = None,
    storage_options: StorageOptions | None = None,
    concurrency: int = 32,
) -> list[MlemObject | MlemError]:
    """`load_meta` for many paths at once, at most `concurrency` requests in flight and
    one GET per metafile per hop. Returns the objects in order; where a path fails, its
    error (a `MlemError`) stands in its place instead of aborting the batch.

    >>> import tempfile, os
    >>> from mlemremote import MlemModel
    >>> from mlemremote.api import load_many
    >>> folder = tempfile.mkdtemp()
    >>> _ = MlemModel().dump(os.path.join(folder, "rf"))
    >>> [type(r).__name__ for r in load_many([folder + "/rf", folder + "/missing"])]
    ['MlemModel', 'MlemObjectNotFound']
    """
    _check_concurrency(concurrency)
    _check_flags(follow_links=follow_links)
    return _bulk.load_many(
        paths,
        repo,
        rev=rev,
        follow_links=follow_links,
        force_type=force_type,
        storage_options=storage_options,
        concurrency=concurrency,
    )


@public_bulk
def check(
    repo_or_prefix: str,
    *,
    rev: str | None = None,
    storage_options: StorageOptions | None = None,
    concurrency: int = 32,
) -> list[CheckResult]:
    """Resolve every link below `repo_or_prefix` (at `rev`: a git branch, tag or commit
    of a git repository; read as `load_many` reads) and say
    how each ends: `status` is ok, external (it leaves the repo), dangling, cycle,
    type-mismatch or invalid; `broken` is true for the last four.

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, init, link
    >>> from mlemremote.api import check
    >>> repo = tempfile.mkdtemp()
    >>> init(repo)
    >>> _ = MlemModel().dump("rf", repo=repo)
    >>> _ = link("rf", source_repo=repo, target="latest", target_repo=repo)
    >>> [(r.uri.rsplit("/", 1)[-1], r.status) for r in check(repo)]
    [('latest.mlem', 'ok')]
    """
    _check_concurrency(concurrency)
    found = _bulk.survey(
        repo_or_prefix, rev=rev, storage_options=storage_options, concurrency=concurrency
    )
    return list(found.results)


@public
def load_meta(
    path: str,
    repo: str | None = None,
    rev: str | None = None,
    follow_links: bool = True,
    *,
    force_type: type[MlemObject] | None = None,
    storage_options: StorageOptions | None = None,
) -> MlemObject:
    """Load the metadata object at `path` (a local path or URI, or a name in `repo`).

    A name may be given with or without `.mlem`. It is looked up in MLEM's order: the
    path itself (`<path>.mlem`), then `<repo>/.mlem/<type>/<path>.mlem` for every type;
    a name in two type folders raises `AmbiguousObjectError`, and an object the path
    hides is named in a warning (logger `mlemremote`). Links are followed to the final object unless
    `follow_links=False`; `force_type` checks the class of what is returned.
    `storage_options` configure the filesystem of `path`/`repo` (endpoint, credentials).

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, load_meta
    >>> folder = tempfile.mkdtemp()
    >>> _ = MlemModel(model_type={"type": "sklearn"}).dump(os.path.join(folder, "rf"))
    >>> load_meta(os.path.join(folder, "rf")).model_type
    {'type': 'sklearn'}
    """
    _check_flags(follow_links=follow_links)
    return _load(path, repo, rev, follow_links, force_type, storage_options, shadows=True)


def _load(
    path: str,
    repo: str | None,
    rev: str | None,
    follow_links: bool,
    force_type: type[MlemObject] | None,
    storage_options: StorageOptions | None,
    *,
    shadows: bool,
) -> MlemObject:
    loc = resolve(path, repo, rev, storage_options=storage_options)
    anchor_remotes(loc)
    return _links.load(
        loc,
        build,
        repo_given=repo is not None,
        follow_links=follow_links,
        force_type=force_type,
        shadows=shadows,
    )


@public
def link(
    source: str | MlemObject,
    source_repo: str | None = None,
    rev: str | None = None,
    target: str | None = None,
    target_repo: str | None = None,
    external: bool | None = None,
    follow_links: bool = True,
    absolute: bool = False,
    *,
    storage_options: StorageOptions | None = None,
    pin: bool = False,
    expected: MlemLink | str | None = None,
    folder_relative: bool = False,
    message: str | None = None,
) -> MlemLink:
    """Create a link to `source` (a path, URI, name in `source_repo`, or saved object).

    With `target`, the link is written where MLEM writes it: with `target_repo`, at
    `<target_repo>/.mlem/link/<target>.mlem`; without, at `<target>.mlem`, unless that
    path is inside a repo: then at `<repo>/.mlem/link/<path in repo>.mlem`. `external`
    keeps it at the path itself (`<repo>/<target>.mlem`). A link to an object in the same
    repo is repo-relative (it survives moving or copying the repo) unless `absolute`;
    anything else is written as a full URI with its scheme, which MLEM and mlemremote
    resolve alike from any working directory. `folder_relative=True` writes a link
    outside repos relative to its own folder (`./m.mlem`), movable with the folder but
    not readable by MLEM (MLEM reads such paths against its working directory). An
    existing link at the target is replaced; any other object there raises
    `ObjectExistsError`.

    `rev` names a version of the source: a git commit, branch or tag on local disk, an
    S3 VersionId or a GCS generation. `pin=True` records the version the source has now.
    `expected` (the link at the target as loaded earlier, or its ETag/generation) makes
    the move a compare-and-swap: `AliasChangedError` if the alias changed since.
    The move's history records who made it (the `author` setting, by default
    `user@host`) and `message`, why (printable text; one that looks like a credential
    is refused).

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, link, load_meta
    >>> folder = tempfile.mkdtemp()
    >>> _ = MlemModel().dump(os.path.join(folder, "models", "rf"))
    >>> link(os.path.join(folder, "models", "rf"), target=os.path.join(folder, "latest")).path[:8]
    'file:///'
    """
    _links.check_expected(expected)  # before anything is read or written
    message = _history.check_message(message)
    _check_flags(
        external=external,
        follow_links=follow_links,
        absolute=absolute,
        pin=pin,
        folder_relative=folder_relative,
    )
    if isinstance(target, str):
        refuse_secrets(target)
    if target_repo is not None:  # the alias's repo: its remotes reach the source
        anchor_remotes(resolve(target_repo, storage_options=storage_options).as_repo())
    chain: list[str] = []
    if isinstance(source, MlemObject):
        if not source.is_saved:
            raise MlemObjectNotSavedError("cannot link to an object that is not saved")
        meta = source
        if follow_links and isinstance(meta, MlemLink):
            meta, _ = _links.walk(meta, build)
    else:
        # (Without the hidden-object reads of `load_meta`: six GETs that would make every
        # alias move slower than MLEM's; `check` reports hidden objects.)
        meta = _load(source, source_repo, rev, follow_links, None, storage_options, shadows=False)
    if isinstance(meta, MlemLink):
        # Linking a link: it must resolve, and not through the target (that would be a cycle).
        _, chain = _links.walk(meta, build)
    new_link = meta._link_at(_links.pinned_location(meta) if pin else meta.location)
    if target is None:
        return new_link
    target_loc = _links.target_location(
        target, target_repo, external, MlemLink.type_folder, build, storage_options=storage_options
    )
    if str(target_loc) in chain:
        raise InvalidLinkError(
            f"linking {target_loc} to {meta.location} would make a cycle: " + " -> ".join(chain)
        )
    _links.write_link(
        new_link,
        target_loc,
        build,
        absolute=absolute,
        folder_relative=folder_relative,
        expected=expected,
        message=message,
    )
    return new_link


@public
def init(path: str = ".", *, storage_options: StorageOptions | None = None) -> None:
    """Make `path` a repo: create `<path>/.mlem/config.yaml` (empty) unless it exists.

    >>> import tempfile, os
    >>> from mlemremote import init
    >>> repo = tempfile.mkdtemp()
    >>> init(repo); init(repo)
    >>> os.listdir(os.path.join(repo, ".mlem"))
    ['config.yaml']
    """
    loc = resolve(path, storage_options=storage_options)
    if MLEM_DIR in loc.fullpath.split("/"):
        raise InvalidLinkError(f"cannot make a repo inside {MLEM_DIR}/: {loc}")
    config = loc.sibling(join(loc.fullpath, MLEM_DIR, CONFIG_FILE), repo=loc.fullpath)
    store = store_for(config)
    if store.read(config) is not None:
        return
    try:
        store.write(config, b"", Expect.ABSENT)
    except WriteConflict:
        # Another process made it a repo in the meantime, or something that is not a
        # file is in the way: only the first is a success.
        if store.read(config) is None:
            raise StorageError(f"cannot create {config}: something else is there") from None


__all__ = [
    "ArtifactFile",
    "CheckResult",
    "HistoryEntry",
    "Pulled",
    "Settings",
    "Watch",
    "WatchEvent",
    "check",
    "configure",
    "configured",
    "history",
    "init",
    "link",
    "load_many",
    "load_meta",
    "open_artifact",
    "pull",
    "rollback",
    "unlink",
    "watch",
]


@public
def history(
    path: str, repo: str | None = None, *, storage_options: StorageOptions | None = None
) -> list[HistoryEntry[MlemLink]]:
    """Where the alias `path` (in `repo`) pointed over time, newest first; the first
    entry always describes the alias as it is now.

    From the bucket's object versions where it keeps them (versioned S3 and GCS buckets);
    elsewhere from the append-only log under `<repo>/.mlem/history/`, one object per move,
    checked against the alias itself: a move that no entry records (made by MLEM or
    another tool, or by a writer killed before it logged) is shown with `recorded=False`.

    >>> import tempfile
    >>> from mlemremote import MlemModel, init, link
    >>> from mlemremote.api import history
    >>> repo = tempfile.mkdtemp()
    >>> init(repo)
    >>> for name in ("v1", "v2"):
    ...     _ = MlemModel().dump(name, repo=repo, external=True)
    ...     _ = link(name, source_repo=repo, target="latest", target_repo=repo)
    >>> [entry.link.path for entry in history("latest", repo=repo)]
    ['v2.mlem', 'v1.mlem']

    Each entry says who made the move and why (`entry.author`, `entry.message`), as the
    mover recorded them (None for moves made by other tools or earlier versions).
    After `unlink`, the alias's history starts with its removal (`entry.removed`,
    `entry.link` None), and `rollback` can bring it back.
    """
    current, where, missing = _current_alias(path, repo, storage_options)
    return _history_of(current, where, missing)


def _current_alias(
    path: str, repo: str | None, storage_options: StorageOptions | None
) -> tuple[MlemLink | None, Location, MlemObjectNotFound | None]:
    """The alias as it is now and where it is; or, when there is none (it was removed),
    None, where `link` would write it, and the error that says it is missing."""
    try:
        current = load_meta(path, repo, follow_links=False, storage_options=storage_options)
    except MlemObjectNotFound as exc:
        if type(exc) is not MlemObjectNotFound:
            raise
        places: list[Location] = []
        for external in (None, True):  # in .mlem/link/, or where `link -e` wrote it
            with contextlib.suppress(MlemError):
                places.append(
                    _links.target_location(
                        path,
                        repo,
                        external,
                        MlemLink.type_folder,
                        build,
                        storage_options=storage_options,
                    )
                )
        if not places:
            raise exc from None
        # (The place whose history remembers the alias: an external alias's log is its own.)
        remembered = [p for p in places if _history.has_log(p)]
        return None, (remembered or places)[0], exc
    if not isinstance(current, MlemLink):
        raise InvalidLinkError(f"{current.location} is a {current.object_type}, not a link")
    return current, current.loc, None


def _history_of(
    current: MlemLink | None, where: Location, missing: MlemObjectNotFound | None
) -> list[HistoryEntry[MlemLink]]:
    def build_link(content: Mapping[str, Any], uri: str) -> MlemLink:
        obj = build(content, uri)
        if not isinstance(obj, MlemLink):
            raise InvalidLinkError(f"{uri}: records a {obj.object_type}, not a link")
        return obj

    if current is None and missing is not None:
        # No alias now: only a history that remembers one makes this a removed alias.
        try:
            entries = _history.history_of(None, None, where, build_link)
        except MlemRootNotFound:
            raise missing from None
        if all(entry.link is None for entry in entries):
            raise missing
        return entries
    entries = _history.history_of(
        current, None if current is None else current._modified, where, build_link
    )
    if current is not None and entries and entries[0].link is not None:
        entries[0].link._token = current._token  # the first entry is the alias now
    return entries


def _resolved(link: MlemLink, at: Location) -> str | None:
    """The metafile `link` finds when it stands at `at` (however it spells it: `v2`,
    `v2.mlem`, MLEM's name form, repo-relative or with `repo:`), or None when it finds
    nothing valid. (One lookup: a rollback compares files, not spellings.)"""
    placed = link.model_copy()
    placed._location = at
    try:
        found = _links.find_meta(_links.link_target(placed), build, chain=[str(at)])
    except MlemError:
        return None
    return str(found.location)


@public
def rollback(
    path: str,
    repo: str | None = None,
    to: int | HistoryEntry[MlemLink] | None = None,
    *,
    expected: MlemLink | str | None = None,
    storage_options: StorageOptions | None = None,
    message: str | None = None,
) -> MlemLink:
    """Move the alias back to an earlier target, with compare-and-swap against the alias
    as read here (`AliasChangedError` if it moved meanwhile). By default it goes to the
    newest entry of `history()` whose target differs from the current one; `to` may
    name an index into `history()` or one of its entries instead. `expected` (the alias
    as loaded earlier, or its token: `history()[0].link.token`) makes the swap compare
    against that instead, so an index read from an earlier `history()` cannot name
    another entry after the alias moved. `message` is recorded with the move, as in
    `link`.

    >>> import tempfile
    >>> from mlemremote import MlemModel, init, link, load_meta
    >>> from mlemremote.api import rollback
    >>> repo = tempfile.mkdtemp()
    >>> init(repo)
    >>> for name in ("v1", "v2"):
    ...     _ = MlemModel(model_type={"name": name}).dump(name, repo=repo, external=True)
    ...     _ = link(name, source_repo=repo, target="latest", target_repo=repo)
    >>> rollback("latest", repo=repo).path
    'v1.mlem'
    >>> load_meta("latest", repo=repo).model_type
    {'name': 'v1'}
    """
    _links.check_expected(expected)  # before anything is read
    message = _history.check_message(message)
    current, where, missing = _current_alias(path, repo, storage_options)
    if isinstance(to, HistoryEntry):
        entry = to
    else:
        entries = _history_of(current, where, missing)
        if to is None:
            # One lookup per distinct target (a deploy job re-linking the same model a
            # hundred times leaves a hundred identical entries).
            seen: dict[tuple[str, str | None, str | None], str | None] = {}

            def finds(link: MlemLink) -> str | None:
                key = (link.path, link.repo, link.rev)
                if key not in seen:
                    seen[key] = _resolved(link, where)
                return seen[key]

            now = None if current is None else finds(current)
            earlier = (
                e
                for e in (entries if current is None else entries[1:])
                if e.link is not None and finds(e.link) not in (now, None)
            )
            found = next(earlier, None)
            if found is None:
                raise InvalidLinkError(f"{where} has no earlier target to go back to")
            entry = found
        elif isinstance(to, int) and not isinstance(to, bool) and 0 <= to < len(entries):
            if to == 0 and current is not None:
                raise InvalidLinkError(
                    f"entry 0 of the history of {where} is the alias as it is now: there is "
                    "nothing to go back to; nothing was written"
                )
            entry = entries[to]
        else:
            raise InvalidLinkError(
                f"there is no entry {to!r} in the history of {where}: its entries are "
                f"numbered 0 to {len(entries) - 1}"
            )
    if entry.link is None:
        raise InvalidLinkError(
            f"that entry of {where}'s history is a removal, not a target to go back to "
            "(to remove the alias, unlink it)"
        )
    previous = entry.link.model_copy()
    previous._location = where
    _links.walk(previous, build)  # the old target must still resolve, from here
    previous._location = None
    # Compare-and-swap with the alias as read here; a removed alias is created only
    # if nothing appeared there meanwhile.
    against = expected if expected is not None else current
    _links.write_link(
        previous,
        where,
        build,
        expected=Expect.ABSENT if against is None else against,
        message=message,
    )
    return previous


@public
def unlink(
    path: str,
    repo: str | None = None,
    *,
    expected: MlemLink | str | None = None,
    storage_options: StorageOptions | None = None,
    message: str | None = None,
) -> MlemLink:
    """Remove the alias `path` (in `repo`): the link metafile that `link(..., target=path,
    target_repo=repo)` writes, so `unlink("latest", repo=R)` removes
    `R/.mlem/link/latest.mlem`. Returns the link that was removed.

    Only a link is ever removed: a model or any other object at that name raises
    `ObjectExistsError` and is left untouched, and a missing alias raises
    `MlemObjectNotFound`. The deletion is conditional on the alias as read here (a model
    written there meanwhile is never deleted); `expected` (the link as loaded earlier with
    `follow_links=False`, or its token) makes it a compare-and-swap: `AliasChangedError`
    if the alias changed since, and nothing is removed. The removal is recorded in the
    alias's history (in a repo; outside one no history is kept), with who removed it and
    `message`; `rollback()` restores the alias as it was before it.

    >>> import tempfile
    >>> from mlemremote import MlemModel, init, link, load_meta
    >>> from mlemremote.api import history, rollback, unlink
    >>> repo = tempfile.mkdtemp()
    >>> init(repo)
    >>> _ = MlemModel().dump("rf", repo=repo, external=True)
    >>> _ = link("rf", source_repo=repo, target="latest", target_repo=repo)
    >>> unlink("latest", repo=repo).path
    'rf.mlem'
    >>> [entry.removed for entry in history("latest", repo=repo)]
    [True, False]
    >>> rollback("latest", repo=repo).path
    'rf.mlem'
    """
    _links.check_expected(expected)  # before anything is read
    message = _history.check_message(message)
    target = _links.target_location(
        path,
        repo,
        None,
        MlemLink.type_folder,
        build,
        storage_options=storage_options,
        removing=True,
    )
    return cast(MlemLink, _links.remove_link(target, build, expected=expected, message=message))


@public
def pull(
    path: str,
    dest: str,
    repo: str | None = None,
    rev: str | None = None,
    *,
    overwrite: bool = False,
    concurrency: int = 8,
    progress: bool | None = None,
    external_artifacts: bool = False,
    storage_options: StorageOptions | None = None,
) -> Pulled:
    """Copy every artifact of the object `path` (in `repo`, at `rev`; links followed as
    `load_meta` follows them) into the new local folder `dest`, like `dvc get`: each file
    at its place relative to the metafile, beside a copy of the metafile that names them
    (MLEM loads the folder as it is). Files are read through the same filesystems (so
    remotes, credentials and storage options) as the metafile, at most `concurrency` at
    once, each checked against its `size` and MD5 `hash` while it streams.

    Nothing is left in `dest` unless every file matched: the files go to a temporary
    folder beside it, renamed into place at the end. `dest` must not exist, unless
    `overwrite` (then the folder there is replaced in one step). An artifact must be
    inside its metafile's folder or repo, on the same filesystem and bucket
    (`InvalidArtifactError`); `external_artifacts=True` lets it be elsewhere, where a link
    could lead. `progress`: a progress line on stderr (default: when it is a terminal).

    >>> import hashlib, os, tempfile
    >>> from mlemremote import MlemModel
    >>> from mlemremote.api import pull
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "rf"), "wb") as f:
    ...     _ = f.write(b"weights")
    >>> art = {"uri": "rf", "size": 7, "hash": hashlib.md5(b"weights").hexdigest()}
    >>> _ = MlemModel(artifacts={"data.pkl": art}).dump(os.path.join(folder, "rf"))
    >>> pulled = pull(os.path.join(folder, "rf"), os.path.join(folder, "out"))
    >>> sorted(os.listdir(pulled.dest)), open(pulled.files["data.pkl"], "rb").read()
    (['rf', 'rf.mlem'], b'weights')
    """
    _check_concurrency(concurrency)
    _check_flags(overwrite=overwrite, external_artifacts=external_artifacts)
    if progress is not None and not isinstance(progress, bool):
        raise InvalidArgumentError(f"progress must be True, False or None, not {progress!r:.60}")
    target = _artifacts.local_dest(dest)
    _artifacts.check_dest(target, overwrite)  # before any request
    loc = resolve(path, repo, rev, storage_options=storage_options)
    anchor_remotes(loc)
    obj = _links.load(loc, build, repo_given=repo is not None, follow_links=True, shadows=True)
    return _artifacts.pull(
        obj,
        target,
        overwrite=overwrite,
        concurrency=concurrency,
        progress=progress,
        external=external_artifacts,
        named=loc,
    )


@public
def open_artifact(
    path: str,
    name: str | None = None,
    repo: str | None = None,
    rev: str | None = None,
    *,
    external_artifacts: bool = False,
    storage_options: StorageOptions | None = None,
) -> ArtifactFile:
    """Open one artifact of the object `path` (in `repo`, at `rev`, links followed) for
    reading, without a copy: a binary file object (a context manager) over the bytes
    as they arrive. `name` is its key in the metafile's `artifacts` (optional when there
    is only one). Where it may be is checked as in `pull`.

    No more than its `size` bytes are handed out; the read that reaches the end checks
    the MD5, and raises `ArtifactIntegrityError` instead of ending when the bytes are not
    the ones the metafile names. A `with` block that ends without an error reads what
    was left unread, so the whole file has been checked when it ends.

    The bytes are handed out before the last of them is checked: never give the stream
    to a reader that acts on what it reads (`pickle.load(f)` runs code from the first
    bytes); use `pull`, or `f.read()` it whole (checked) and then load those bytes.

    >>> import hashlib, os, tempfile
    >>> from mlemremote import MlemModel
    >>> from mlemremote.api import open_artifact
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "rf"), "wb") as f:
    ...     _ = f.write(b"weights")
    >>> art = {"uri": "rf", "size": 7, "hash": hashlib.md5(b"weights").hexdigest()}
    >>> _ = MlemModel(artifacts={"data.pkl": art}).dump(os.path.join(folder, "rf"))
    >>> with open_artifact(os.path.join(folder, "rf")) as f:
    ...     f.read()
    b'weights'
    """
    _check_flags(external_artifacts=external_artifacts)
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"name must be an artifact's name (a string), not {name!r:.60}")
    obj = _load(path, repo, rev, True, None, storage_options, shadows=True)
    found = _artifacts.artifacts_of(obj, external=external_artifacts)
    return _artifacts.open_stream(_artifacts.pick(found, name, str(obj.location)))


@public
def watch(
    path: str,
    repo: str | None = None,
    rev: str | None = None,
    *,
    interval: float = 5.0,
    jitter: float = 0.1,
    verify_every: int | None = 12,
    force_type: type[MlemObject] | None = None,
    storage_options: StorageOptions | None = None,
    max_events: int | None = None,
    stop: threading.Event | None = None,
) -> Watch[MlemObject]:
    """Watch the alias `path` (in `repo`): an iterator that yields a `WatchEvent` each
    time what the alias resolves to changes (it, or any hop of its chain, moved), for a
    model server that reloads when `prod` moves. The first event is the alias as it is.

    Polls come every `interval` seconds (times 1 +- `jitter`, at random). A poll of an
    unchanged chain costs one conditional request per hop and no body bytes where the
    backend allows it (S3 and Azure If-None-Match, GCS ifGenerationNotMatch, a stat on
    local disk); every `verify_every`-th poll (None: never) reads the chain in full, to
    bound what a server that answers a conditional request wrongly could hide. A move
    to a broken target (dangling, a cycle, a wrong type, a link the policy refuses) is
    an event with `ok` False and `error` set, whose `obj` is the last good object: it is
    never yielded as if it were fine. Storage faults are retried, then logged (`fault`)
    and polled again with backoff; they never end the watch. It ends after `max_events`
    events, when `stop` (a `threading.Event`) is set, or on `close()`.

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, link
    >>> from mlemremote.api import watch
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("v1", "v2"):
    ...     _ = MlemModel(model_type={"name": name}).dump(os.path.join(folder, name))
    >>> _ = link(os.path.join(folder, "v1"), target=os.path.join(folder, "prod"))
    >>> events = watch(os.path.join(folder, "prod"), interval=0.01, max_events=2)
    >>> next(events).obj.model_type
    {'name': 'v1'}
    >>> _ = link(os.path.join(folder, "v2"), target=os.path.join(folder, "prod"))
    >>> event = next(events)
    >>> event.ok, event.obj.model_type
    (True, {'name': 'v2'})
    """
    for name, value in (("interval", interval), ("jitter", jitter)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentError(f"{name} must be a number, not {value!r:.60}")
    # (A whole number too large for a float, 10**400, raised OverflowError here.)
    if not (interval > 0 and _finite(interval)):
        raise InvalidArgumentError(
            f"interval must be a finite number of seconds more than 0, not {interval!r:.60}"
        )
    if not 0 <= jitter < 1:
        raise InvalidArgumentError(f"jitter must be at least 0 and below 1, not {jitter!r:.60}")
    for name, count in (("verify_every", verify_every), ("max_events", max_events)):
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise InvalidArgumentError(
                f"{name} must be None or a whole number >= 1, not {count!r:.60}"
            )
    if stop is not None and not isinstance(stop, threading.Event):
        raise InvalidArgumentError(f"stop must be a threading.Event, not {type(stop).__name__}")
    if force_type is not None and not isinstance(force_type, type):
        raise InvalidArgumentError(f"force_type must be an object class, not {force_type!r:.60}")
    where = resolve(path, repo, rev, storage_options=storage_options)  # refuse bad names now

    def chain(first: bool) -> list[MlemObject]:
        loc = resolve(path, repo, rev, storage_options=storage_options)
        anchor_remotes(loc)
        start = _links.load(
            loc, build, repo_given=repo is not None, follow_links=False, shadows=first
        )
        objects = _links.walk_all(start, build)
        _links.check_force_type(objects[-1], force_type)
        return objects

    return Watch(
        chain,
        str(where),
        interval=float(interval),
        jitter=float(jitter),
        verify_every=verify_every,
        max_events=max_events,
        stop=stop,
    )
