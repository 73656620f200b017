"""Hostile review (rev2-trust), http(s): a header or auth of the call's options is sent
only to the origin the call named: each test fails on the commit before its fix.

- a link read from https://good/ (with `headers: {Authorization: ...}` in the call's
  options) that names another origin in `allowed_hosts` was read with the same
  filesystem, so the other origin got the Authorization header, though a redirect to it
  did not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web
from httpserver import Net, Server, install

from mlemremote.api import configured, load_meta
from mlemremote.core.objects import MlemModel

pytestmark = pytest.mark.backends("http")

MODEL = "object_type: model\nmodel_type:\n  served: true\n"
BEARER = "Bearer victim-token-0001"


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Net:
    return install(monkeypatch)


@pytest.fixture
def server(net: Net) -> Iterator[Server]:
    found = Server()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def other(net: Net) -> Iterator[tuple[Server, list[str]]]:
    """Another origin serving a model; records the Authorization headers it gets."""
    found = Server()
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text=MODEL)

    found.routes["/rf.mlem"] = handler
    try:
        yield found, seen
    finally:
        found.stop()


def test_the_calls_headers_never_reach_another_origin_a_link_names(
    net: Net, server: Server, other: tuple[Server, list[str]]
) -> None:
    target, seen = other
    net.names["models.test"] = ["127.0.0.1"]
    link = f"object_type: link\nlink_type: model\npath: http://models.test:{target.port}/rf.mlem\n"
    server.file("/alias.mlem", link)
    server.file("/rf.mlem", MODEL)
    options = {"headers": {"Authorization": BEARER}}
    with configured(allowed_hosts={"models.test"}):
        assert isinstance(load_meta(f"{server.url}/alias.mlem", storage_options=options), MlemModel)
    assert seen == [""], "the call's Authorization header reached the origin a link named"
    # Within the origin the call named, the header is sent.
    server.file("/local.mlem", "object_type: link\nlink_type: model\npath: rf.mlem\n")
    assert isinstance(load_meta(f"{server.url}/local.mlem", storage_options=options), MlemModel)
