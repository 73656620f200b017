"""A git revision on local disk (fsspec's GitFileSystem over pygit2): read-only."""

from __future__ import annotations

from mlemremote._stores.base import Blob, Store, Where, content_token, too_large


class GitRevisionStore(Store):
    kind = "git revision"

    def describe(self, loc: Where) -> str:
        return f"git revision {loc.rev}"

    def _read_once(self, loc: Where, limit: int) -> Blob | None:
        # The blob's size is known without reading it: a large one is never loaded.
        size = loc.fs.info(loc.fullpath).get("size")
        if isinstance(size, int) and size > limit:
            raise too_large(loc, limit, size)
        data = bytes(loc.fs.cat_file(loc.fullpath))
        return Blob(data, content_token(data), loc.rev)
