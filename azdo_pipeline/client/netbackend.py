"""An httpcore network backend on plain asyncio streams (the transport's sockets).

httpcore's default async backend goes through anyio, whose TLS layer hands over one TLS record
(16 KB at most) per read and opens a cancel scope for each: reading the ~120 MB of a large
organization's full sync took ~9,600 reads and about a third of the client's CPU. asyncio's own
TLS (the event loop's SSL protocol) buffers every record that has arrived, so one read returns
up to `max_bytes` at a fraction of the cost. Behaviour is otherwise the same: httpcore's
exception types, timeouts per operation, TLS upgrade (also for proxy tunnels), `is_readable`
for the pool's stale-connection check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

_STREAM_LIMIT = 1 << 20  # StreamReader buffer high-water mark: bytes read ahead of httpcore


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or type(exc).__name__) from exc
    except (OSError, EOFError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise other(str(exc) or type(exc).__name__) from exc


class AsyncioStream(AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()

    async def aclose(self) -> None:
        # Abort rather than close: a graceful TLS close waits for the peer's close_notify, which an
        # unresponsive host never sends (and after a failed handshake nothing ever ends the wait).
        # HTTP/1.1 frames every message, so nothing is lost; httpcore's anyio backend does not wait either.
        self._writer.transport.abort()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(0.1):
                await self._writer.wait_closed()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncNetworkStream:
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except BaseException:
            # Mid-handshake, asyncio's SSL protocol never tells the stream that the connection
            # closed, so aclose() would wait out its whole bound: abort, the socket closes on the
            # loop's next turn.
            self._writer.transport.abort()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # The pool asks before reusing an idle connection. The event loop reads the socket as
            # data comes, so a server's close shows here as EOF, an error or a closing transport.
            # Unread bytes count too (e.g. a 408 the server sent before closing): the connection is
            # then not reusable. StreamReader has no public view of its buffer.
            return (self._reader.at_eof() or self._reader.exception() is not None
                    or self._writer.transport.is_closing() or bool(getattr(self._reader, "_buffer", b"")))
        return None


class AsyncioBackend(AsyncNetworkBackend):
    """httpcore.AsyncNetworkBackend over asyncio.open_connection (see the module docstring)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=_STREAM_LIMIT,
                    happy_eyeballs_delay=0.25)
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=_STREAM_LIMIT)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (request/response mapping, exceptions) over a pool on AsyncioBackend."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, proxy: str | None = None) -> None:
        super().__init__(verify=ssl_context, limits=limits, http1=True, http2=False)
        # httpx builds its pool on the default backend and offers no parameter for another one;
        # tests/unit/test_netbackend.py fails should a new httpx stop using this attribute.
        pool: dict[str, Any] = {
            "ssl_context": ssl_context, "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry, "http1": True, "http2": False,
            "network_backend": AsyncioBackend()}
        if proxy is None:
            self._pool = httpcore.AsyncConnectionPool(**pool)
            return
        # As httpx.AsyncHTTPTransport(proxy=...) does: https targets go through a CONNECT tunnel and
        # TLS to the target is verified with `ssl_context`; an https proxy is verified with it too.
        url = httpx.Proxy(proxy)
        self._pool = httpcore.AsyncHTTPProxy(
            proxy_url=httpcore.URL(scheme=url.url.raw_scheme, host=url.url.raw_host, port=url.url.port,
                                   target=url.url.raw_path),
            proxy_auth=url.raw_auth, proxy_headers=url.headers.raw,
            proxy_ssl_context=ssl_context if url.url.scheme == "https" else None, **pool)
