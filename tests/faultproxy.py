"""A fault-injecting reverse proxy on 127.0.0.1, put in front of an emulator.

It forwards requests unchanged (the Host header included, so signatures still verify)
and, on the schedule a test sets, answers 500/503 (or any status), drops the connection,
delays, cuts a response in the middle of its body, or forwards the request and then drops
the connection (the write happened, the answer was lost).

Faults of the body (the request is forwarded unchanged, so that its signature verifies,
and the upstream's status and headers are kept; its body is replaced):

- "huge-body": a 200 with `huge_bytes` (1 GiB) of body and that Content-Length, whatever
  Range asked for; "huge-body-chunked": the same without Content-Length (chunked);
  "huge-body-lying": a chunked 206 whose Content-Range claims the object's true, small
  size, with `huge_bytes` of body;
- "ignore-range": a 200 with the object's full size (from the upstream's Content-Range)
  as if Range had not been sent;
- "trickle": the upstream's answer, its body one byte every `trickle_interval` seconds;
- "whole-again": a 200 with the whole object, as a server that ignores Range would send
  it to a resumed read (the body of an earlier "cut" of the same request: the proxy
  cannot re-sign a request without its Range).

GET bodies are streamed to the client in small writes over a small socket send buffer,
and each is recorded in `transfers` with the bytes actually sent before the client
stopped reading and disconnected (or the body ended).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
}

Match = Callable[[str, str], bool]  # (method, path with query) -> does the fault apply

BODY_FAULTS = {
    "huge-body",
    "huge-body-chunked",
    "huge-body-lying",
    "ignore-range",
    "trickle",
    "whole-again",
}
WRITE_SIZE = 16 * 1024  # the proxy's writes of a streamed body
SEND_BUFFER = 32 * 1024  # SO_SNDBUF of a streamed body's connection (Linux doubles it)
# Headers that describe the upstream body: dropped when the body is replaced.
BODY_HEADERS = {
    "content-range",
    "content-md5",
    "x-goog-hash",
    "x-ms-content-crc64",
    "x-goog-stored-content-length",
}


@dataclass
class Transfer:
    """One GET body streamed to the client."""

    method: str
    path: str
    fault: str | None
    status: int
    length: int | None  # the Content-Length announced, None when chunked
    written: int = 0  # bytes handed to the connection (an upper bound of what was sent)
    sent: int = 0  # of those, bytes that had left the proxy's user-space buffer
    complete: bool = False  # the whole body went out
    disconnected: bool = False  # the client closed the connection before the end
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


@dataclass
class Rule:
    fault: str  # "503", "500", "403", ..., "drop", "cut", "delay", "lost-response", or
    # one of BODY_FAULTS
    per_request: int  # faults for each distinct request (method + path + query)
    match: Match
    seen: Counter[str] = field(default_factory=Counter)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # "METHOD path" -> times seen
        self.transfers: list[Transfer] = []  # every GET body streamed, in order
        self.cut_bodies: dict[str, bytes] = {}  # path (no query) -> a body a "cut" cut short
        # The body of the "huge-body" faults (set lower to run the tests against a reader
        # that would download it whole, without exhausting the machine's memory).
        self.huge_bytes = int(os.environ.get("MLEMREMOTE_TEST_HUGE_BYTES", str(1 << 30)))
        self.trickle_interval = 0.5  # seconds between two bytes of a "trickle" body
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- schedule ----------------------------------------------------------------------
    def fail(self, fault: str, per_request: int = 1, match: Match | None = None) -> None:
        """Make the first `per_request` tries of every matching request fail."""
        with self._lock:
            self.rules.append(Rule(fault, per_request, match or (lambda m, p: True)))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def transfers_of(self, match: Callable[[str], bool]) -> list[Transfer]:
        """The recorded GET bodies whose path (with query) matches."""
        with self._lock:
            return [t for t in self.transfers if match(t.path)]

    def wait_ended(self, transfers: list[Transfer], timeout: float = 10.0) -> bool:
        """Wait until each of `transfers` has ended (sent whole, or the client gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t.ended is not None for t in transfers):
                return True
            time.sleep(0.05)
        return False

    def _fault_for(self, method: str, path: str) -> str | None:
        key = f"{method} {path}"
        with self._lock:
            self.requests[key] += 1
            for rule in self.rules:
                if rule.match(method, path) and rule.seen[key] < rule.per_request:
                    rule.seen[key] += 1
                    self.injected[rule.fault] += 1
                    return rule.fault
        return None

    # -- serving -----------------------------------------------------------------------
    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        async def _stop() -> None:
            await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._fault_for(request.method, request.path_qs)
        body = await request.read()
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)  # never reaches the client
        if fault is not None and fault.isdigit():
            return web.Response(
                status=int(fault),
                text=f"injected {fault}",
                headers={"x-ms-error-code": "ServerBusy"} if fault == "503" else {},
            )
        if fault == "delay":
            await asyncio.sleep(0.5)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.method == "GET" and fault not in ("cut", "lost-response"):
            return await self._stream(request, fault, headers, body)
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            status = upstream.status
            length = upstream.headers.get("Content-Length")
        if request.method == "HEAD":  # no body, but the size the client asked about
            response = web.StreamResponse(status=status, headers=out_headers)
            if length is not None:
                response.headers["Content-Length"] = length
            await response.prepare(request)
            return response
        if fault == "lost-response":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=status)
        if fault == "cut" and len(data) > 1:
            self.cut_bodies[request.path] = data
            response = web.StreamResponse(status=status, headers=out_headers)
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=status, body=data, headers=out_headers)

    # -- streamed GET bodies -----------------------------------------------------------
    async def _stream(
        self, request: web.Request, fault: str | None, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse:
        async with self._session.request(
            "GET",
            self.upstream + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as upstream:
            status = upstream.status
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            known = upstream.headers.get("Content-Length")
            length = int(known) if known is not None and known.isdigit() else None
            if fault not in BODY_FAULTS or status >= 300:
                return await self._send(
                    request,
                    fault,
                    status,
                    out_headers,
                    length,
                    upstream.content.iter_chunked(WRITE_SIZE),
                )
            data = await upstream.read()  # the object, or the range of it that was asked for
            total = upstream.headers.get("Content-Range", "").rpartition("/")[2]
        if fault == "trickle":
            return await self._send(
                request,
                fault,
                status,
                out_headers,
                len(data),
                _trickle(data, self.trickle_interval, lambda: _gone(request)),
            )
        out_headers = {k: v for k, v in out_headers.items() if k.lower() not in BODY_HEADERS}
        for key in [k for k in out_headers if k.lower().startswith("x-amz-checksum-")]:
            del out_headers[key]
        if fault == "whole-again":
            whole = self.cut_bodies[request.path]
            return await self._send(
                request, fault, 200, out_headers, len(whole), _padded(whole, len(whole))
            )
        if fault == "ignore-range":  # the whole object, as if Range had not been sent
            size = int(total) if total.isdigit() else len(data)
            return await self._send(request, fault, 200, out_headers, size, _padded(data, size))
        if fault == "huge-body-lying":
            out_headers["Content-Range"] = f"bytes 0-{max(len(data) - 1, 0)}/{len(data)}"
            return await self._send(
                request, fault, 206, out_headers, None, _padded(data, self.huge_bytes)
            )
        length = self.huge_bytes if fault == "huge-body" else None
        return await self._send(
            request, fault, 200, out_headers, length, _padded(data, self.huge_bytes)
        )

    async def _send(
        self,
        request: web.Request,
        fault: str | None,
        status: int,
        headers: dict[str, str],
        length: int | None,
        chunks: AsyncIterator[bytes],
    ) -> web.StreamResponse:
        """Stream `chunks` to the client, recording what was sent before it went away."""
        transfer = Transfer(request.method, request.path_qs, fault, status, length)
        with self._lock:
            self.transfers.append(transfer)
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:  # no megabytes of kernel buffer between the client and us
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        response = web.StreamResponse(status=status, headers=headers)
        if length is not None:
            response.content_length = length
        else:
            response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            async for chunk in chunks:
                await response.write(chunk)
                transfer.written += len(chunk)
                pending = transport.get_write_buffer_size() if transport is not None else 0
                transfer.sent = transfer.written - pending
            await response.write_eof()
            transfer.sent = transfer.written
            transfer.complete = True
        except (ConnectionError, asyncio.CancelledError):
            transfer.disconnected = True
            if transport is not None:
                transport.close()
        finally:
            transfer.ended = time.monotonic()
        return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _padded(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data`, then filler, `size` bytes in all, in writes of `WRITE_SIZE`."""
    filler = b"#" * WRITE_SIZE
    done = 0
    for start in range(0, min(len(data), size), WRITE_SIZE):
        piece = data[start : min(start + WRITE_SIZE, size)]
        done += len(piece)
        yield piece
    while done < size:
        piece = filler[: min(WRITE_SIZE, size - done)]
        done += len(piece)
        yield piece


async def _trickle(data: bytes, interval: float, gone: Callable[[], bool]) -> AsyncIterator[bytes]:
    """`data` a byte at a time, `interval` seconds apart; stops when the client is gone."""
    for index in range(len(data)):
        if index:
            end = time.monotonic() + interval
            while time.monotonic() < end:
                if gone():
                    raise ConnectionResetError("the client closed the connection")
                await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        yield data[index : index + 1]
