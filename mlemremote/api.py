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

from collections.abc import Mapping
from typing import Any

from mlemremote import _links
from mlemremote._location import CONFIG_FILE, MLEM_DIR, join, resolve, shared_repo_probes
from mlemremote._storage import read_bytes, write_bytes
from mlemremote.core.errors import (
    InvalidLinkError,
    MlemObjectNotFound,
    MlemObjectNotSavedError,
    ObjectExistsError,
)
from mlemremote.core.objects import MlemLink, MlemObject

StorageOptions = Mapping[str, Any]


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

    A name may be given with or without `.mlem`; in a repo it is also looked up in
    `.mlem/link/`, `.mlem/model/`, ... Links are followed to the final object unless
    `follow_links=False`; `force_type` checks the class of what is returned.
    `storage_options` configure the filesystem of `path`/`repo` (endpoint, credentials).

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, load_meta
    >>> folder = tempfile.mkdtemp()
    >>> _ = MlemModel(model_type={"type": "sklearn"}).dump(os.path.join(folder, "rf"))
    >>> load_meta(os.path.join(folder, "rf")).model_type
    {'type': 'sklearn'}
    """
    loc = resolve(path, repo, rev, storage_options=storage_options)
    try:
        obj = _links.find_meta(loc, repo_given=repo is not None)
    except MlemObjectNotFound:
        if repo is not None:  # say so when the repo itself is the problem
            _links.require_repo(loc.sibling(loc.repo or "", repo=None))
        raise
    if follow_links and isinstance(obj, MlemLink):
        obj, _ = _links.walk(obj)
    _links.check_force_type(obj, force_type)
    return obj


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
) -> MlemLink:
    """Create a link to `source` (a path, URI, name in `source_repo`, or saved object).

    With `target`, the link is written there (`<target>.mlem`), or with `target_repo` to
    `<target_repo>/.mlem/link/<target>.mlem` (`<target_repo>/<target>.mlem` when
    `external`). Paths are relative where the link can survive a move (same repo, or same
    bucket with no repo) unless `absolute`; otherwise full URIs. An existing link at the
    target is replaced; any other object there raises `ObjectExistsError`.

    >>> import tempfile, os
    >>> from mlemremote import MlemModel, link, load_meta
    >>> folder = tempfile.mkdtemp()
    >>> _ = MlemModel().dump(os.path.join(folder, "models", "rf"))
    >>> link(os.path.join(folder, "models", "rf"), target=os.path.join(folder, "latest")).path
    './models/rf.mlem'
    """
    with shared_repo_probes():
        return _link(
            source, source_repo, rev, target, target_repo, external, follow_links, absolute,
            storage_options,
        )  # fmt: skip


def _link(
    source: str | MlemObject,
    source_repo: str | None,
    rev: str | None,
    target: str | None,
    target_repo: str | None,
    external: bool | None,
    follow_links: bool,
    absolute: bool,
    storage_options: StorageOptions | None,
) -> MlemLink:
    chain: list[str] = []
    if isinstance(source, MlemObject):
        if not source.is_saved:
            raise MlemObjectNotSavedError("cannot link to an object that is not saved")
        meta = source
        if follow_links and isinstance(meta, MlemLink):
            meta, _ = _links.walk(meta)
    else:
        meta = load_meta(source, source_repo, rev, follow_links, storage_options=storage_options)
    if isinstance(meta, MlemLink):
        # Linking a link: it must resolve, and not through the target (that would be a cycle).
        _, chain = _links.walk(meta)
    new_link = _links.link_to(meta)
    if target is None:
        return new_link
    target_loc = _links.target_location(
        target, target_repo, external, MlemLink.type_folder, storage_options=storage_options
    )
    if str(target_loc) in chain:
        raise InvalidLinkError(
            f"linking {target_loc} to {meta.location} would make a cycle: " + " -> ".join(chain)
        )
    _links.write_link(new_link, target_loc, absolute=absolute)
    return new_link


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
    if read_bytes(config) is not None:
        return
    try:
        write_bytes(config, b"", create_only=True)
    except ObjectExistsError:
        return  # another process made it a repo in the meantime


__all__ = ["init", "link", "load_meta"]
