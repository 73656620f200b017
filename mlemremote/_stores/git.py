"""A git revision on local disk (fsspec's GitFileSystem over pygit2): read-only."""

from __future__ import annotations

from mlemremote._stores.base import Blob, Store, Where, content_token, too_large


class GitRevisionStore(Store):
    kind = "git revision"

    def describe(self, loc: Where) -> str:
        return f"git revision {loc.rev}"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        # The blob's size comes from its object header: a large blob is never inflated
        # (pygit2's `Blob.size`, which fsspec's `info` asks for, inflates all of it).
        import pygit2

        repo = loc.fs.repo
        commit, _ = repo.resolve_refish(loc.fs.ref)
        try:
            found = commit.tree[loc.fullpath] if loc.fullpath else commit.tree
        except KeyError:
            raise FileNotFoundError(loc.fullpath) from None
        if not isinstance(found, pygit2.Blob):
            raise IsADirectoryError(loc.fullpath)
        _, size = repo.odb.read_header(found.id)
        if size > limit:
            raise too_large(loc, limit, size)
        data = bytes(found.data)
        return Blob(data, content_token(data), loc.rev)
