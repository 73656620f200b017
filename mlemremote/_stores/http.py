"""Read-only http(s)."""

from __future__ import annotations

from mlemremote._stores.base import Store, Where


class HTTPStore(Store):
    kind = "http"

    def describe(self, loc: Where) -> str:
        return f"{loc.scheme}:// (read-only)"
