"""Read-only http(s) against hostile servers on 127.0.0.1: no SSRF, the size cap while
the body streams in, the call's time budget, no listing.

Every test runs under a guard (`httpserver.install`) that records each outgoing
connection and refuses, on the spot, any that is not to 127.0.0.1; host names resolve
only through the test's own table. "No connection" below means: the guard saw none to
the refused address, and the server behind it saw no request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPORT
from httpserver import Net, Server, install, self_signed

from mlemremote._cli import main
from mlemremote.api import check, configured, load_many, load_meta
from mlemremote.core.errors import (
    HostNotAllowedError,
    InvalidLinkError,
    MetafileTooLargeError,
    MlemObjectNotFound,
    SecretInURLError,
    TimeBudgetError,
    UnsupportedLocationError,
)
from mlemremote.core.objects import MlemModel

pytestmark = pytest.mark.backends("http")

MODEL = "object_type: model\nmodel_type:\n  served: true\n"
METADATA_PATH = "/latest/meta-data/iam/security-credentials/x.mlem"
# 169.254.169.254 (and its neighbours) as a URL may spell it.
SPELLINGS = [
    "169.254.169.254",
    "169.254.169.254.",
    "2852039166",
    "0xA9FEA9FE",
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376",
    "169.254.43518",
    "169.16689662",
    "①⑥⑨.②⑤④.①⑥⑨.②⑤④",  # IDNA maps these to ASCII digits
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[::ffff:0:169.254.169.254]",
    "[::169.254.169.254]",
    "[64:ff9b::169.254.169.254]",
    "[2002:a9fe:a9fe::1]",
    "[fe80::1]",
    "[fe80::a9fe:a9fe%25eth0]",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "metadata.google.internal",
    "METADATA.Google.Internal.",
    "0.0.0.0",
    "0",
    "[::]",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "[ff02::1]",
]
REFUSED = "link-local|metadata|unspecified|multicast|reserved"


def link_to(url: str) -> str:
    return f"object_type: link\nlink_type: model\npath: {url}\n"


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
def other(net: Net) -> Iterator[Server]:
    """Another origin (another port on 127.0.0.1), serving a model."""
    found = Server()
    found.file("/rf.mlem", MODEL)
    try:
        yield found
    finally:
        found.stop()


# -- no SSRF ---------------------------------------------------------------------------
@pytest.mark.parametrize("host", SPELLINGS)
def test_metadata_address_refused_in_every_spelling(host: str, net: Net, server: Server) -> None:
    # Passed directly by the user: refused before any connection.
    with pytest.raises(HostNotAllowedError, match=REFUSED):
        load_meta(f"http://{host}{METADATA_PATH}")
    # Named by a link read from a server the user trusts: refused as what it is.
    server.file("/link.mlem", link_to(f"http://{host}{METADATA_PATH}"))
    with pytest.raises(HostNotAllowedError, match=REFUSED):
        load_meta(f"{server.url}/link.mlem")
    assert net.elsewhere() == []
    assert dict(server.hits) == {"/link.mlem": 1}


def test_name_that_resolves_to_metadata_address_refused(
    net: Net, server: Server, other: Server
) -> None:
    net.names["models.test"] = ["169.254.169.254"]
    net.names["v6.test"] = ["fe80::1"]
    net.names["mapped.test"] = ["::ffff:169.254.169.254"]
    for name in ("models.test", "v6.test", "mapped.test"):
        with pytest.raises(HostNotAllowedError, match=f"{name} resolves to .*link-local"):
            load_meta(f"http://{name}:{other.port}/rf.mlem")
    # Even a host the user allowed cannot turn into a metadata address through its DNS.
    server.file("/link.mlem", link_to(f"http://models.test:{other.port}/rf.mlem"))
    with configured(allowed_hosts={"models.test"}), pytest.raises(HostNotAllowedError):
        load_meta(f"{server.url}/link.mlem")
    assert net.elsewhere() == []
    assert other.hits == {}


def test_only_checked_addresses_are_connected_to(net: Net, other: Server) -> None:
    """DNS rebinding: of the addresses a name resolves to, only those that passed the
    check are ever connected to."""
    net.names["mixed.test"] = ["169.254.169.254", "127.0.0.1"]
    loaded = load_meta(f"http://mixed.test:{other.port}/rf.mlem")
    assert isinstance(loaded, MlemModel)
    assert net.elsewhere() == []
    assert net.to_port(other.port) == [("127.0.0.1", other.port)]


def test_metadata_name_allowed_when_named(net: Net, other: Server) -> None:
    net.names["metadata.google.internal"] = ["127.0.0.1"]
    url = f"http://metadata.google.internal:{other.port}/rf.mlem"
    with pytest.raises(HostNotAllowedError):
        load_meta(url)
    assert other.hits == {}
    with configured(allowed_hosts={"metadata.google.internal"}):
        assert isinstance(load_meta(url), MlemModel)
    assert other.hits == {"/rf.mlem": 1}


def test_link_to_another_origin_needs_allowed_hosts(
    net: Net, server: Server, other: Server
) -> None:
    net.names["models.test"] = ["127.0.0.1"]
    server.file("/port.mlem", link_to(f"{other.url}/rf.mlem"))  # another port
    server.file("/name.mlem", link_to(f"http://models.test:{other.port}/rf.mlem"))
    for name in ("port", "name"):
        with pytest.raises(HostNotAllowedError, match="another origin"):
            load_meta(f"{server.url}/{name}.mlem")
    assert other.hits == {}
    assert net.to_port(other.port) == []
    with configured(allowed_hosts={"models.test"}):
        assert isinstance(load_meta(f"{server.url}/name.mlem"), MlemModel)
    assert other.hits == {"/rf.mlem": 1}


def test_redirects_followed_only_within_the_origin(net: Net, server: Server, other: Server) -> None:
    server.redirect("/to-metadata.mlem", f"http://169.254.169.254{METADATA_PATH}")
    server.redirect("/to-metadata-hex.mlem", f"http://0xA9FEA9FE{METADATA_PATH}")
    server.redirect("/to-other.mlem", f"{other.url}/rf.mlem")
    server.redirect("/to-other-307.mlem", f"{other.url}/rf.mlem", status=307)
    server.redirect("/to-ftp.mlem", "ftp://127.0.0.1/rf.mlem")
    for name in ("to-metadata", "to-metadata-hex", "to-other", "to-other-307"):
        with pytest.raises(HostNotAllowedError):
            load_meta(f"{server.url}/{name}.mlem")
        assert server.hits[f"/{name}.mlem"] == 1  # refused, not retried
    with pytest.raises(InvalidLinkError, match="not http"):
        load_meta(f"{server.url}/to-ftp.mlem")
    assert net.elsewhere() == []
    assert other.hits == {}
    assert net.to_port(other.port) == []
    REPORT["http"].append("refused redirects: 1 request each, 0 connections to the target")

    # Within the origin: followed, relative or absolute.
    server.file("/models/rf.mlem", MODEL)
    server.redirect("/moved.mlem", "/models/rf.mlem")
    server.redirect("/moved-abs.mlem", f"{server.url}/moved.mlem", status=301)
    assert isinstance(load_meta(f"{server.url}/moved-abs.mlem"), MlemModel)
    assert server.hits["/models/rf.mlem"] == 1
    # A loop ends after a bounded number of hops, not retried.
    server.redirect("/loop.mlem", "/loop.mlem")
    with pytest.raises(InvalidLinkError, match="redirects"):
        load_meta(f"{server.url}/loop.mlem")
    assert server.hits["/loop.mlem"] == 6
    # To a host the user allowed: followed.
    net.names["models.test"] = ["127.0.0.1"]
    server.redirect("/to-allowed.mlem", f"http://models.test:{other.port}/rf.mlem")
    with configured(allowed_hosts={"models.test"}):
        assert isinstance(load_meta(f"{server.url}/to-allowed.mlem"), MlemModel)


def test_no_redirect_from_https_to_http(net: Net, other: Server, tmp_path: Path) -> None:
    secure = Server(tls=self_signed(tmp_path))
    try:
        secure.file("/rf.mlem", MODEL)
        secure.redirect("/down.mlem", f"{other.url}/rf.mlem")
        so = {"ssl": False}  # storage options reach the request: a self-signed certificate
        assert isinstance(load_meta(f"{secure.url}/rf.mlem", storage_options=so), MlemModel)
        # Even to a host the user allowed: never down to plain http.
        with configured(allowed_hosts={"127.0.0.1"}), pytest.raises(HostNotAllowedError) as caught:
            load_meta(f"{secure.url}/down.mlem", storage_options=so)
        assert "https to http" in str(caught.value)
        assert secure.hits["/down.mlem"] == 1
        assert other.hits == {}
    finally:
        secure.stop()


def test_secrets_in_url_refused_before_any_request(net: Net, server: Server) -> None:
    server.file("/rf.mlem", MODEL)
    host = server.url.split("://", 1)[1]
    for url in (
        f"http://alice:hunter2secret@{host}/rf.mlem",
        f"{server.url}/rf.mlem?sig=hunter2secret",
        f"{server.url}/rf.mlem?X-Amz-Signature=hunter2secret",
    ):
        with pytest.raises(SecretInURLError) as caught:
            load_meta(url)
        assert "hunter2secret" not in str(caught.value)
    server.file("/link.mlem", link_to(f"{server.url}/rf.mlem?sig=hunter2secret"))
    with pytest.raises(SecretInURLError) as caught:
        load_meta(f"{server.url}/link.mlem")
    assert "hunter2secret" not in str(caught.value)
    assert dict(server.hits) == {"/link.mlem": 1}
    assert net.elsewhere() == []


# -- the size cap, while streaming ------------------------------------------------------
CAP = 4096
BIG = 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("mode", "told"),
    [
        ("length", f"is {BIG} bytes"),
        ("chunked", f"has more than {CAP} bytes"),
        ("lying", f"has more than {CAP} bytes"),
    ],
)
def test_size_cap_holds_while_streaming(mode: str, told: str, server: Server) -> None:
    """5 MB that ignore `Range` (with a length, chunked, or under a lying 206): the
    read stops at the cap, and the server sees the client go early."""
    server.flood("/big.mlem", BIG, mode=mode)
    with configured(max_metafile_bytes=CAP), pytest.raises(MetafileTooLargeError) as caught:
        load_meta(f"{server.url}/big.mlem")
    assert told in str(caught.value)
    assert "reading stopped at the cap" in str(caught.value)
    assert server.done["/big.mlem"].wait(10)
    sent = server.sent["/big.mlem"]
    REPORT["http"].append(f"cap {CAP} B, 5 MB body ({mode}): the server sent {sent} B")
    assert sent < CAP + 128 * 1024, sent
    assert server.hits["/big.mlem"] == 1  # not retried


def test_small_files_and_empty_files_are_read_whole(server: Server) -> None:
    server.file("/rf.mlem", MODEL)
    with configured(max_metafile_bytes=len(MODEL)):
        assert isinstance(load_meta(f"{server.url}/rf.mlem"), MlemModel)
    with configured(max_metafile_bytes=len(MODEL) - 1), pytest.raises(MetafileTooLargeError):
        load_meta(f"{server.url}/rf.mlem")


# -- the time budget --------------------------------------------------------------------
@pytest.mark.exclusive  # the figure is a time: alone
def test_trickling_body_ends_with_the_time_budget(server: Server) -> None:
    server.trickle("/slow.mlem", size=60, every=0.5)  # 30 s for the whole body
    started = time.monotonic()
    with configured(retry_max_seconds=2), pytest.raises(TimeBudgetError):
        load_meta(f"{server.url}/slow.mlem")
    took = time.monotonic() - started
    REPORT["http"].append(f"trickling body, retry_max_seconds=2: ended after {took:.1f} s")
    assert took < 15
    assert server.done["/slow.mlem"].wait(10)  # the client hung up
    assert server.sent["/slow.mlem"] < 60


def test_transient_faults_retried_within_the_budget(server: Server) -> None:
    server.flaky("/rf.mlem", MODEL, failures=3)  # 503, reset, 503
    assert isinstance(load_meta(f"{server.url}/rf.mlem"), MlemModel)
    assert server.hits["/rf.mlem"] == 4


# -- what keeps working -----------------------------------------------------------------
def test_bulk_reads_and_missing_files(net: Net, server: Server) -> None:
    server.file("/a.mlem", MODEL)
    server.file("/b.mlem", link_to("./a.mlem"))
    server.redirect("/c.mlem", f"http://169.254.169.254{METADATA_PATH}")
    found = load_many([f"{server.url}/{name}.mlem" for name in ("a", "b", "c", "gone")])
    assert [type(f) for f in found] == [
        MlemModel,
        MlemModel,
        HostNotAllowedError,
        MlemObjectNotFound,
    ]
    assert server.hits["/c.mlem"] == 1
    assert net.elsewhere() == []


def test_listing_over_http_is_refused(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.file("/repo/", f'<a href="http://169.254.169.254{METADATA_PATH}">x</a>')
    with pytest.raises(UnsupportedLocationError, match="cannot list"):
        check(f"{server.url}/repo")
    for command in ("check", "ls"):
        with pytest.raises(SystemExit) as exited:
            main([command, f"{server.url}/repo"])
        assert exited.value.code == 2
        assert "cannot list" in capsys.readouterr().err
    assert server.hits["/repo/"] == 0


def test_the_calls_headers_never_reach_another_origin_a_link_names(
    net: Net, server: Server, other: Server
) -> None:
    """A link read from an origin the call named (with `headers` in its options) that names
    another origin in `allowed_hosts` is read with that origin's own filesystem: it got
    the call's Authorization header (a redirect to it did not) before the second review."""
    from aiohttp import web

    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text=MODEL)

    other.routes["/rf.mlem"] = handler
    net.names["models.test"] = ["127.0.0.1"]
    server.file("/alias.mlem", link_to(f"http://models.test:{other.port}/rf.mlem"))
    server.file("/rf.mlem", MODEL)
    options = {"headers": {"Authorization": "Bearer victim-token-0001"}}
    with configured(allowed_hosts={"models.test"}):
        assert isinstance(load_meta(f"{server.url}/alias.mlem", storage_options=options), MlemModel)
    assert seen == [""], "the call's Authorization header reached the origin a link named"
    # Within the origin the call named, the header is sent.
    server.file("/local.mlem", link_to("rf.mlem"))
    assert isinstance(load_meta(f"{server.url}/local.mlem", storage_options=options), MlemModel)
