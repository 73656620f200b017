"""Path and URI arithmetic shared by every layer: pure functions, no I/O.

>>> join("s3://bucket/repo", "models/../rf.mlem")
's3://bucket/repo/rf.mlem'
>>> is_inside("repo/models/rf.mlem", "repo")
True
"""

from __future__ import annotations

import posixpath

MLEM_DIR = ".mlem"
MLEM_EXT = ".mlem"
CONFIG_FILE = "config.yaml"
HISTORY_PREFIX = f"{MLEM_DIR}/history/"  # the append-only log of alias moves

# Schemes whose first path component is a bucket or container: repo lookup stops there,
# and a relative link never leaves it.
BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
READ_ONLY_SCHEMES = frozenset({"http", "https"})


def relpath(path: str, start: str) -> str:
    if not start:
        return path
    return posixpath.relpath(path, start)


def join(base: str, *parts: str) -> str:
    """Join and normalize, keeping a URL's ``scheme://host`` prefix intact."""
    prefix = ""
    if "://" in base:
        scheme, base = base.split("://", 1)
        host, _, base = base.partition("/")
        prefix, base = f"{scheme}://{host}", "/" + base
    joined = posixpath.join(base, *parts) if base else posixpath.join(*parts)
    return prefix + (posixpath.normpath(joined) if joined else joined)


def is_inside(path: str, folder: str) -> bool:
    """True when `path` is `folder` or below it (no `..` trickery: both normalized)."""
    if not folder:
        return not path.startswith("../") and path != ".."
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def top_of(scheme: str, fullpath: str) -> str:
    """The top folder a relative link may not leave: a bucket, a host or the root."""
    if scheme in BUCKET_SCHEMES:
        return fullpath.split("/", 1)[0]
    if scheme in READ_ONLY_SCHEMES:
        return "/".join(fullpath.split("/", 3)[:3])  # scheme://host
    return "/"


def split_scheme(uri: str) -> tuple[str | None, str]:
    """(lower-case scheme or None, uri) for ``scheme://...``; None for plain paths."""
    if "://" in uri:
        scheme, _ = uri.split("://", 1)
        if scheme.isidentifier() or scheme.replace("+", "").replace("-", "").isalnum():
            return scheme.lower(), uri
    return None, uri


def repo_from_path(fullpath: str) -> str | None:
    """The repo root named by a `.mlem/` component of the path itself (no request)."""
    parts = fullpath.split("/")
    if MLEM_DIR in parts[:-1]:
        index = len(parts) - 2 - parts[-2::-1].index(MLEM_DIR)
        return "/".join(parts[:index]) or ("/" if fullpath.startswith("/") else "")
    return None
