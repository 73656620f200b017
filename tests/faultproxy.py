"""A fault-injecting reverse proxy on 127.0.0.1, put in front of an emulator.

It forwards requests unchanged (the Host header included, so signatures still verify)
and, on the schedule a test sets, answers 500/503 (or any status), drops the connection,
delays, cuts a response in the middle of its body, or forwards the request and then drops
the connection (the write happened, the answer was lost).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
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


@dataclass
class Rule:
    fault: str  # "503", "500", "403", ..., "drop", "cut", "delay", "lost-response"
    per_request: int  # faults for each distinct request (method + path + query)
    match: Match
    seen: Counter[str] = field(default_factory=Counter)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # "METHOD path" -> times seen
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
            response = web.StreamResponse(status=status, headers=out_headers)
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=status, body=data, headers=out_headers)
