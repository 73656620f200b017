"""Read-only http(s), with the checks a URL from someone else's link needs.

Every read is one coroutine (`_get`) on the filesystem's event loop, on a session of its
own that keeps no cookies, reads no proxy or `.netrc` from the environment
(`trust_env=False`) and connects only to addresses that passed the address policy
(`_policy.refused_ip`):

- **Before each request** the URL's host is checked in every spelling
  (`_policy.check_http_address`): aiohttp does not resolve literal IP addresses, so these
  are refused here, as are cloud metadata names.
- **Names** are resolved by `_CheckedResolver`, which drops every refused address it gets
  back (a name in `allowed_hosts` included: only an address named there passes); when
  none is left the request is refused. The connection goes to an address that was
  checked, so a name that changes its answer between two lookups (DNS rebinding) gains
  nothing.
- **Redirects** are never followed by the client: a 3xx is followed here, at most
  `MAX_REDIRECTS` times, only to the same origin (or a host in `allowed_hosts`, never
  from https to http), each hop checked again. Refusals are `MlemError`s: never retried.
- **The size cap** holds while the body streams in: the request asks for
  `Range: bytes=0-<cap>`, and reading stops as soon as more than the cap has arrived,
  whether the server honours the range, sends a length, or neither (chunked).
- **The time budget**: `AsyncStore.run` cuts the coroutine off when the call's budget is
  spent, a trickling body included.

Listing is refused: a server's index page is HTML whose links may lead anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fsspec.asyn import sync

from mlemremote import _policy
from mlemremote._settings import current as current_settings
from mlemremote._stores.base import (
    AsyncBody,
    AsyncStore,
    Blob,
    Body,
    Where,
    changed,
    content_token,
    own_timeouts,
    read_capped,
    told_size,
    told_start,
    too_large,
)
from mlemremote.core.errors import HostNotAllowedError, InvalidLinkError, UnsupportedLocationError

if TYPE_CHECKING:
    import aiohttp
    import yarl

MAX_REDIRECTS = 5
# What the client buffers ahead of the reader: aiohttp stops reading from the socket past
# twice this, and the socket's receive buffer is sized to the cap (within these bounds)
# rather than left to grow (to tens of MB) with the kernel's autotuning.
READ_BUFFER = 16 * 1024
RECEIVE_BUFFER = (16 * 1024, 2 * 1024 * 1024)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MISSING = frozenset({404, 410})


class HTTPStatusError(Exception):
    """An answer that is neither the file, nor a redirect, nor "no such file"."""

    def __init__(self, status: int, where: str) -> None:
        super().__init__(f"HTTP {status} from {where}")
        self.status = status


class HTTPStore(AsyncStore):
    kind = "http"

    def describe(self, loc: Where) -> str:
        return f"{loc.scheme}:// (read-only)"

    def listing(self, loc: Where) -> list[str]:
        raise UnsupportedLocationError(
            f"cannot list {loc}: http(s) has no listing, only index pages whose links may "
            "lead to other hosts; name the metafiles one by one, or list a copy on disk "
            "or in a bucket"
        )

    entries = listing  # one folder is no different

    async def _get(self, loc: Where, limit: int) -> Blob:
        session, response = await _respond(loc, f"bytes=0-{limit}", limit)
        try:
            async with response:
                return await _body(loc, response, limit)
        finally:
            await session.close()

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # One GET (redirects followed as for metafiles), its body read as it is consumed;
        # a resumed read names the validator it started on (If-Match, or If-Range).
        session, response = self.run(
            loc,
            "read",
            own_timeouts(_respond),
            loc,
            f"bytes={offset}-" if offset else None,
            None,
            token,
        )

        async def close() -> None:
            response.close()
            await session.close()

        status = response.status
        if status in _MISSING or status >= 300:
            sync(loc.fs.loop, close)
            if status in _MISSING:
                raise FileNotFoundError(str(loc))
            if token is not None and status == 412:
                raise changed(loc)
            raise HTTPStatusError(status, str(loc))
        headers = response.headers
        etag = headers.get("ETag")
        content_range = headers.get("Content-Range") if status == 206 else None
        size = told_size(content_range, headers.get("Content-Length"))
        if headers.get("Content-Encoding", "identity") not in ("identity", ""):
            size = None
        return AsyncBody(
            loc, response.content.read, close, size, etag or None, told_start(content_range)
        )


async def _respond(
    loc: Where, byte_range: str | None, limit: int | None, token: str | None = None
) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
    """A session and its answer to a GET of `loc` (following redirects within the policy),
    body unread; the caller closes both. `limit`: the cap the socket's buffer is sized to
    (None: a whole artifact, the largest buffer)."""
    import aiohttp
    import yarl

    where = str(loc)
    url = yarl.URL(loc.fullpath, encoded=bool(getattr(loc.fs, "encoded", False)))
    start = url_origin(url)
    options = _request_options(loc.fs)
    connector = checked_connector(options.pop("ssl", True), limit)
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # no proxies or .netrc credentials from the environment
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,  # the cap counts what arrives, not what it inflates to
        # The call's budget bounds the whole; connecting has its own limit.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=current_settings().connect_timeout),
        read_bufsize=READ_BUFFER,
    )
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            _policy.check_http_address(str(url), where, [url.host or ""])
            same = url_origin(url) == start
            headers = {
                **(options.get("headers", {}) if same else {}),
                "Accept-Encoding": "identity",
            }
            if byte_range is not None:
                headers["Range"] = byte_range
            if token is not None:
                headers["If-Match" if byte_range is None else "If-Range"] = token
            auth = options.get("auth") if same else None
            try:
                response = await session.get(url, headers=headers, auth=auth, allow_redirects=False)
            except Exception as exc:
                refusal = refusal_in(exc)
                if refusal is not None:
                    raise refusal from None
                raise
            if response.status not in _REDIRECTS:
                return session, response
            response.close()
            url = redirect_target(where, url, response, start)
        raise InvalidLinkError(f"{where}: more than {MAX_REDIRECTS} redirects")
    except BaseException:
        await session.close()
        raise


Origin = tuple[str, str, int | None]


def url_origin(url: yarl.URL) -> Origin:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def redirect_target(
    where: str, url: yarl.URL, response: aiohttp.ClientResponse, start: Origin
) -> yarl.URL:
    """Where a 3xx leads, if it may be followed: the same origin as the read started
    from, or a host in `allowed_hosts` (and never from https to http)."""
    import yarl

    location = response.headers.get("Location")
    if not location:
        raise InvalidLinkError(f"{where}: HTTP {response.status} without a Location")
    try:
        target = url.join(yarl.URL(location))
    except ValueError:
        raise InvalidLinkError(f"{where}: HTTP {response.status} to a malformed URL") from None
    if target.scheme.lower() not in _policy.HTTP_SCHEMES:
        raise InvalidLinkError(f"{where}: redirected to {target.scheme}://, not http(s)")
    shown = f"{target.scheme}://{target.host}:{target.port}"
    if url.scheme.lower() == "https" and target.scheme.lower() == "http":
        raise HostNotAllowedError(f"{where}: redirected from https to http ({shown}); refused")
    if url_origin(target) != start and not _policy.host_allowed(target.host or ""):
        raise HostNotAllowedError(
            f"{where}: redirected to another origin ({shown}); a redirect is followed only "
            "within the origin the read started from, or to a host in "
            "configure(allowed_hosts=...)"
        )
    return target


async def _body(loc: Where, response: aiohttp.ClientResponse, limit: int) -> Blob:
    """The file's bytes, read in chunks until the end or until past the cap."""
    where = str(loc)
    status = response.status
    if status in _MISSING:
        raise FileNotFoundError(where)
    if status == 416:  # no byte 0 to give: the file is empty
        return Blob(b"", content_token(b""))
    if status not in (200, 206):
        raise HTTPStatusError(status, where)
    content_range = response.headers.get("Content-Range") if status == 206 else None
    size = told_size(content_range, response.headers.get("Content-Length"))
    if size is not None and size > limit:
        response.close()
        raise too_large(loc, limit, size)
    body = await read_capped(response.content.read, limit)
    if len(body) > limit:
        response.close()  # drop the connection: nothing more is downloaded
        raise too_large(loc, limit, size)
    return Blob(body, content_token(body))


def checked_connector(ssl: Any, limit: int | None) -> aiohttp.TCPConnector:
    """Connections only to checked addresses, none kept between reads, each with a
    receive buffer sized to the cap (where aiohttp can make the socket: 3.12 on)."""
    import aiohttp

    settings: dict[str, Any] = {
        "resolver": _checked_resolver_class()(),
        "use_dns_cache": False,
        "force_close": True,
        "ssl": ssl,
    }
    factory = functools.partial(_socket, _receive_buffer(limit))
    try:
        return aiohttp.TCPConnector(**settings, socket_factory=factory)
    except TypeError:  # pragma: no cover - aiohttp before 3.12
        return aiohttp.TCPConnector(**settings)


def _receive_buffer(limit: int | None) -> int:
    low, high = RECEIVE_BUFFER
    return high if limit is None else max(low, min(limit + 1, high))


def _socket(receive_buffer: int, addr_info: tuple[Any, ...]) -> socket.socket:
    """A client socket whose receive buffer is fixed before it connects: what the
    kernel takes in ahead of the reader stays near the cap."""
    family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=kind, proto=proto)
    with contextlib.suppress(OSError):  # a platform without it: the default stands
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    return sock


def _request_options(fs: Any) -> dict[str, Any]:
    """What the filesystem's storage options say about requests: headers, auth, ssl
    (sent only within the origin the read started from); nothing else is taken."""
    found: dict[str, Any] = {}
    for source in (getattr(fs, "client_kwargs", None), getattr(fs, "kwargs", None)):
        if not isinstance(source, Mapping):
            continue
        if isinstance(source.get("headers"), Mapping):
            found["headers"] = {**found.get("headers", {}), **source["headers"]}
        for name in ("auth", "ssl"):
            if source.get(name) is not None:
                found[name] = source[name]
    return found


def refusal_in(exc: BaseException) -> BaseException | None:
    """A refusal of ours raised inside the HTTP client (by the resolver), if any."""
    current: BaseException | None = exc
    seen = 0
    while current is not None and seen < 16:
        if isinstance(current, (HostNotAllowedError, InvalidLinkError)):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


@functools.cache
def _checked_resolver_class() -> type[Any]:
    """An aiohttp resolver that never returns an address the policy refuses (built on
    first use: aiohttp is needed only when http(s) is)."""
    from aiohttp.abc import AbstractResolver, ResolveResult
    from aiohttp.resolver import ThreadedResolver

    class _CheckedResolver(AbstractResolver):
        def __init__(self) -> None:
            self._inner = ThreadedResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            found = await self._inner.resolve(host, port, family)
            if _policy.host_allowed(host) and _policy.refused_host(host) is not None:
                return found  # the user named this metadata name: its answer stands
            kept: list[ResolveResult] = []
            refused: list[tuple[str, str]] = []
            for result in found:
                # An allowed name gets no pass here: its addresses are checked too (unless
                # named themselves), so that its DNS cannot turn it into a metadata address.
                ip = _policy.parse_ip(result["host"])
                why = "not an IP address" if ip is None else _policy.refused_ip(ip)
                if why is None or _policy.host_allowed(result["host"]):
                    kept.append(result)
                else:
                    refused.append((result["host"], why))
            if not kept and refused:
                address, why = refused[0]
                raise HostNotAllowedError(
                    f"{host} resolves to {address}, {why}; it is never reached over "
                    "http(s) unless named in configure(allowed_hosts=...)"
                )
            return kept

        async def close(self) -> None:
            await self._inner.close()

    return _CheckedResolver
