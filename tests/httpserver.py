"""Test helpers for read-only http: a scriptable aiohttp server on 127.0.0.1, and a
guard that records every outgoing connection and lets none leave 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PIECE = 16 * 1024  # what a streaming handler writes at a time


class Server:
    """An aiohttp server on 127.0.0.1 in a thread of its own. `routes` maps a path to
    its handler (404 for any other); `hits` counts requests by path; `sent` is what a
    streaming handler has handed to the socket so far, by path; `done` is set when that
    handler has ended (the client hung up, or all was sent)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.done: dict[str, threading.Event] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner, self.port = asyncio.run_coroutine_threadsafe(
            self._start(), self._loop
        ).result(10)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    async def _start(self) -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        return runner, server.sockets[0].getsockname()[1]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        handler = self.routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- behaviours --------------------------------------------------------------------
    def file(self, path: str, body: str | bytes) -> None:
        """A plain 200 with the whole body (Range ignored)."""
        data = body.encode() if isinstance(body, str) else body

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data)

        self.routes[path] = handler

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": location})

        self.routes[path] = handler

    def flaky(self, path: str, body: str, failures: int) -> None:
        """For the first `failures` requests a fault (a 503, then a connection dropped
        without an answer, in turn), then the body."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if self.hits[path] <= failures:
                if self.hits[path] % 2 == 0 and request.transport is not None:
                    request.transport.abort()  # a reset: no answer at all
                return web.Response(status=503)
            return web.Response(body=body.encode())

        self.routes[path] = handler

    def flood(self, path: str, size: int, *, mode: str) -> None:
        """`size` bytes, Range ignored, as fast as the client takes them, in `mode`:
        "length" (a true Content-Length), "chunked" (no length), "lying" (a 206 whose
        Content-Range claims 101 bytes, then `size` bytes chunked). The server's send
        buffers are kept small, so that `sent` is close to what the client took in."""
        self.done[path] = threading.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            transport = request.transport
            assert transport is not None
            # Counted as sent once in the kernel, never while still queued in-process.
            transport.set_write_buffer_limits(high=0)
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, PIECE
            )
            response = web.StreamResponse(status=206 if mode == "lying" else 200)
            if mode == "length":
                response.content_length = size
            else:
                response.enable_chunked_encoding()
                if mode == "lying":
                    response.headers["Content-Range"] = "bytes 0-100/101"
            piece = b"#" * PIECE
            try:
                await response.prepare(request)
                while self.sent[path] < size:
                    await response.write(piece)
                    self.sent[path] += len(piece)
                await response.write_eof()
            except Exception:
                pass  # the client hung up
            finally:
                self.done[path].set()
            return response

        self.routes[path] = handler

    def trickle(self, path: str, size: int, every: float) -> None:
        """A Content-Length of `size`, then one byte every `every` seconds."""
        self.done[path] = threading.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            response.content_length = size
            try:
                await response.prepare(request)
                while self.sent[path] < size:
                    await response.write(b"#")
                    self.sent[path] += 1
                    await asyncio.sleep(every)
                await response.write_eof()
            except Exception:
                pass
            finally:
                self.done[path].set()
            return response

        self.routes[path] = handler


class Net:
    """Outgoing connections of one test. `names` maps a host name to the addresses it
    resolves to (any other name does not resolve: no real DNS is ever asked);
    `connects` lists every address a socket tried to connect to; only 127.0.0.1 is
    let through, anything else is refused on the spot (and recorded)."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.connects: list[tuple[Any, ...]] = []

    def elsewhere(self) -> list[tuple[Any, ...]]:
        """Connections tried to anything but 127.0.0.1."""
        return [a for a in self.connects if a[0] != "127.0.0.1"]

    def to_port(self, port: int) -> list[tuple[Any, ...]]:
        return [a for a in self.connects if a[1] == port]


def install(monkeypatch: pytest.MonkeyPatch) -> Net:
    net = Net()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        net.connects.append(tuple(address))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(errno.ECONNREFUSED, "test guard: only 127.0.0.1")
        real_connect(sock, address)

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name in net.names:
            found: list[Any] = []
            for address in net.names[name]:
                if ":" in address:
                    found.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0))
                    )
                else:
                    found.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
            return found
        # Numbers only: a name not in `names` never reaches a real resolver.
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return net


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate for 127.0.0.1."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(["openssl", *request, *subject], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
