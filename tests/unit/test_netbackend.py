"""azdo_pipeline.client.netbackend: the httpcore network backend on plain asyncio streams.

Unit tests of AsyncioBackend / AsyncioStream over loopback sockets, the wiring into Requester, and
AsyncioHTTPTransport against real local servers over TLS (127.0.0.1 only): uvicorn (SimulatorServer
with a small ASGI app) in a thread, raw asyncio servers in the test's own loop for misbehaviour, and
a blocking TLS server on a thread for a peer that freezes. Async code runs through asyncio.run, like
the rest of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpcore
import httpx
import pytest
import trustme
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from azdo_pipeline.client.netbackend import AsyncioBackend, AsyncioHTTPTransport, AsyncioStream, _mapped
from azdo_pipeline.client.transport import ClientSettings, Requester
from tests.loop_clock import Timers, clock_stopped

pytestmark = pytest.mark.timeout(60)

BIG = random.Random(20240611).randbytes(6 * 1024 * 1024 + 123)  # several MB, not a round size
BIG_SHA = hashlib.sha256(BIG).hexdigest()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ---- TLS material --------------------------------------------------------------------------------
class Tls:
    """A throwaway CA with a leaf for 127.0.0.1, server/client contexts, and ones that must fail."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(self.server)
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)
        # the client trusts another CA only
        self.untrusting_client = ssl.create_default_context()
        trustme.CA().configure_trust(self.untrusting_client)
        # a leaf from the trusted CA, but for another name
        self.wrong_name_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("other.example").configure_cert(self.wrong_name_server)


@pytest.fixture(scope="module")
def tls() -> Tls:
    return Tls()


def limits(n: int = 8) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


def client(ctx: ssl.SSLContext, *, connections: int = 8, timeout: httpx.Timeout | float = 10.0,
           base_url: str = "") -> httpx.AsyncClient:
    transport = AsyncioHTTPTransport(ssl_context=ctx, limits=limits(connections))
    return httpx.AsyncClient(transport=transport, timeout=timeout, base_url=base_url)


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def pool_of(c: httpx.AsyncClient) -> httpcore.AsyncConnectionPool:
    return c._transport._pool  # type: ignore[attr-defined]


# ---- a real server: uvicorn (SimulatorServer) serving a small ASGI app -----------------------------
class App:
    """GET /big: BIG; POST /echo: length + sha256 of the body; GET /peer: the client's port;
    GET /gate?key=k&n=N: answers 200 once N requests of key k are inside at the same time (504
    after 5 s alone)."""

    def __init__(self) -> None:
        self.gates: dict[str, list[Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path, status = scope["path"], 200
        if path == "/big":
            payload = BIG
        elif path == "/echo":
            payload = json.dumps({"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
        elif path == "/peer":
            payload = str(scope["client"][1]).encode()
        elif path == "/gate":
            q = parse_qs(scope["query_string"].decode())
            gate = self.gates.setdefault(q["key"][0], [0, asyncio.Event()])
            gate[0] += 1
            if gate[0] >= int(q["n"][0]):
                gate[1].set()
            try:
                await asyncio.wait_for(gate[1].wait(), 5.0)
                payload = b"together"
            except TimeoutError:
                status, payload = 504, b"alone"
        else:
            status, payload = 404, b"no such path"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    srv = SimulatorServer(World(seed=1), app=App()).start()
    try:
        yield srv
    finally:
        srv.stop()


# ---- raw asyncio servers in the test's loop (for misbehaving peers) --------------------------------
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.release = asyncio.Event()  # handlers that hold a connection wait for this


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, ssl_ctx: ssl.SSLContext | None) -> AsyncIterator[RawServer]:
    state = RawServer()
    tasks: set[asyncio.Task[Any]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        state.connections += 1
        state.writers.append(writer)
        with contextlib.suppress(asyncio.CancelledError, OSError, EOFError):  # a client gone, or the test is over
            await handler(reader, writer, state.connections)

    srv = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=ssl_ctx)
    state.port = srv.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.release.set()
        srv.close()
        for w in state.writers:
            w.transport.abort()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


async def until(condition: Callable[[], object]) -> None:
    """Let the loop run until condition() holds (e.g. a peer's close has been read); the test's
    timeout bounds the wait, never a guess of how long the machine needs."""
    while not condition():
        await asyncio.sleep(0.001)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


# ---- a frozen TLS peer on a thread ---------------------------------------------------------------
class FrozenPeer:
    """Blocking TLS server: per connection it completes the handshake, reads one request, answers it
    (or not), and then neither reads nor closes until stop(): a host that froze. It never answers a
    client's TLS close_notify."""

    def __init__(self, tls: Tls, *, answer: bool) -> None:
        self._ctx = tls.server
        self._answer = answer
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FrozenPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5.0)
                tls_conn = self._ctx.wrap_socket(conn, server_side=True)
                self._held.append(tls_conn)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls_conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if self._answer:
                    tls_conn.sendall(OK)
            except OSError:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for s in self._held:
            s.close()


# ==== unit: AsyncioBackend / AsyncioStream over loopback ===========================================
def test_mapped_turns_timeouts_and_io_errors_into_the_given_types() -> None:
    cases: list[tuple[BaseException, type[Exception]]] = [
        (TimeoutError(), httpcore.ReadTimeout), (ConnectionResetError("reset"), httpcore.ReadError),
        (ssl.SSLError("bad record"), httpcore.ReadError), (EOFError(), httpcore.ReadError),
        (asyncio.IncompleteReadError(b"ab", 5), httpcore.ReadError)]
    for raised, expected in cases:
        with pytest.raises(expected) as info, _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            raise raised
        assert info.value.__cause__ is raised
        assert str(info.value)  # never an empty message
    with pytest.raises(ValueError), _mapped(httpcore.ReadTimeout, httpcore.ReadError):  # not an I/O error
        raise ValueError("x")


def test_stream_reads_writes_and_reports_extra_info_over_plain_tcp() -> None:
    async def go() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            writer.write(await reader.readexactly(4))
            await writer.drain()
            await reader.readexactly(1)  # "close now"
            writer.close()

        async with raw_server(echo, None) as srv:
            backend = AsyncioBackend()
            nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = await backend.connect_tcp("127.0.0.1", srv.port, timeout=2.0, local_address="127.0.0.1",
                                               socket_options=[nodelay])
            assert isinstance(stream, AsyncioStream)
            sock = stream.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", srv.port)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            assert stream.get_extra_info("ssl_object") is None
            assert stream.get_extra_info("no such thing") is None
            assert stream.get_extra_info("is_readable") is False  # idle, peer still there

            await stream.write(b"", timeout=1.0)  # nothing to send: a no-op
            await stream.write(b"ping", timeout=1.0)
            got = b""
            while len(got) < 4:
                got += await stream.read(65536, timeout=2.0)
            assert got == b"ping"

            await stream.write(b"x", timeout=1.0)  # the server closes
            await until(lambda: stream.get_extra_info("is_readable"))  # what the pool asks before reuse
            assert await stream.read(65536, timeout=1.0) == b""  # EOF, as httpcore expects
            await stream.aclose()
            assert sock.fileno() == -1  # closed at once, not left to the garbage collector

    run(go())


def test_stream_read_timeout_and_connect_refused_raise_httpcore_errors() -> None:
    async def go() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await srv.release.wait()

        async with raw_server(silent, None) as srv:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", srv.port, timeout=2.0)
            started = time.monotonic()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(1024, timeout=0.1)
            assert time.monotonic() - started > 0.09  # the read timer fired, not an early error
            await stream.aclose()

        with socket.socket() as bound:  # bound, not listening: the kernel refuses connections
            bound.bind(("127.0.0.1", 0))
            with pytest.raises(httpcore.ConnectError):
                await AsyncioBackend().connect_tcp("127.0.0.1", bound.getsockname()[1], timeout=2.0)

    run(go())


def test_stream_start_tls_upgrades_in_place(tls: Tls) -> None:
    """The proxy-tunnel path: a TCP stream upgraded to TLS stays the same stream object."""

    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()
            await srv.release.wait()

        async with raw_server(answer, tls.server) as srv:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", srv.port, timeout=2.0)
            upgraded = await stream.start_tls(tls.client, server_hostname="127.0.0.1", timeout=2.0)
            assert upgraded is stream
            ssl_object = stream.get_extra_info("ssl_object")
            assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2.0)
            got = b""
            while not got.endswith(b"ok"):
                got += await stream.read(65536, timeout=2.0)
            assert got == OK
            await stream.aclose()

    run(go())


def test_connect_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s")

    async def go() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(3))
            await writer.drain()
            writer.close()

        srv = await asyncio.start_unix_server(echo, path)
        try:
            stream = await AsyncioBackend().connect_unix_socket(path, timeout=2.0)
            await stream.write(b"abc", timeout=1.0)
            got = b""
            while len(got) < 3:
                got += await stream.read(10, timeout=2.0)
            assert got == b"abc"
            await stream.aclose()
        finally:
            srv.close()
            await srv.wait_closed()
        with pytest.raises(httpcore.ConnectError):
            await AsyncioBackend().connect_unix_socket(str(tmp_path / "missing"), timeout=1.0)

    run(go())


# ==== wiring: Requester, AsyncioHTTPTransport ======================================================
def test_transport_pool_is_built_on_the_asyncio_backend(tls: Tls) -> None:
    lim = httpx.Limits(max_connections=5, max_keepalive_connections=3, keepalive_expiry=7.0)
    transport = AsyncioHTTPTransport(ssl_context=tls.client, limits=lim)
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, AsyncioBackend)
    assert pool._ssl_context is tls.client
    assert (pool._max_connections, pool._max_keepalive_connections, pool._keepalive_expiry) == (5, 3, 7.0)
    assert (pool._http1, pool._http2) == (True, False)


def test_requester_uses_the_asyncio_backend_by_default() -> None:
    async def go() -> None:
        settings = ClientSettings()
        assert settings.network_backend == "asyncio"
        req = Requester(None, settings)
        try:
            transport = req.http._transport
            assert isinstance(transport, AsyncioHTTPTransport)
            assert isinstance(transport._pool._network_backend, AsyncioBackend)
            assert transport._pool._max_connections == settings.max_concurrency
        finally:
            await req.aclose()

    run(go())


def test_requester_with_anyio_uses_httpcores_default_backend() -> None:
    async def go() -> None:
        req = Requester(None, ClientSettings(network_backend="anyio"))
        try:
            transport = req.http._transport
            assert not isinstance(transport, AsyncioHTTPTransport)
            assert isinstance(transport, httpx.AsyncHTTPTransport)
            assert not isinstance(transport._pool._network_backend, AsyncioBackend)
        finally:
            await req.aclose()

    run(go())


@pytest.mark.parametrize("value", ["trio", "", "ASYNCIO", None])
def test_invalid_network_backend_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="network_backend"):
        ClientSettings(network_backend=value)


@pytest.mark.parametrize(("backend", "asyncio_stream"), [("asyncio", True), ("anyio", False)])
def test_requester_talks_tls_to_a_real_server_through_the_chosen_backend(server: SimulatorServer, backend: str,
                                                                         asyncio_stream: bool) -> None:
    async def go() -> None:
        req = Requester(None, ClientSettings(ca_bundle=server.ca_file, network_backend=backend))
        try:
            reply = await req.request("GET", f"{server.base_url}/peer", endpoint="GET peer", scope=None, auth=False)
            assert reply.status == 200 and reply.content.isdigit()
            resp = await req.http.get(f"{server.base_url}/peer")
            assert resp.content == reply.content  # same pooled connection
            stream = resp.extensions["network_stream"]
            assert isinstance(stream, AsyncioStream) is asyncio_stream
        finally:
            await req.aclose()

    run(go())


# ==== AsyncioHTTPTransport against uvicorn over TLS ================================================
def test_large_body_arrives_intact(server: SimulatorServer) -> None:
    async def go() -> None:
        async with client(server.ssl_context(), base_url=server.base_url) as c:
            resp = await c.get("/big")
            assert resp.status_code == 200
            assert isinstance(resp.extensions["network_stream"], AsyncioStream)
            assert len(resp.content) == len(BIG)
            assert hashlib.sha256(resp.content).hexdigest() == BIG_SHA

    run(go())


def test_large_body_read_slowly_arrives_intact(server: SimulatorServer) -> None:
    """A consumer slower than the network: the stream's buffer fills, reading pauses and resumes."""

    async def go() -> None:
        async with client(server.ssl_context(), base_url=server.base_url) as c, c.stream("GET", "/big") as resp:
            await asyncio.sleep(0.2)  # several MB arrive meanwhile: more than the reader's high-water mark
            digest, size, chunks = hashlib.sha256(), 0, 0
            async for chunk in resp.aiter_raw():
                digest.update(chunk)
                size += len(chunk)
                chunks += 1
                if chunks % 16 == 0:
                    await asyncio.sleep(0.005)
            assert size == len(BIG) and digest.hexdigest() == BIG_SHA

    run(go())


def test_large_upload_arrives_intact(server: SimulatorServer) -> None:
    async def go() -> None:
        async with client(server.ssl_context(), base_url=server.base_url) as c:
            resp = await c.post("/echo", content=BIG)
            assert resp.status_code == 200
            assert resp.json() == {"len": len(BIG), "sha256": BIG_SHA}

    run(go())


def test_sequential_requests_reuse_one_connection(server: SimulatorServer) -> None:
    async def go() -> None:
        async with client(server.ssl_context(), base_url=server.base_url) as c:
            responses = [await c.get("/peer") for _ in range(40)]
            assert {r.status_code for r in responses} == {200}
            assert len({r.content for r in responses}) == 1  # one client port seen by the server
            assert len({id(r.extensions["network_stream"]) for r in responses}) == 1
            assert len(pool_of(c).connections) == 1

    run(go())


def test_concurrent_requests_run_in_parallel_on_several_connections(server: SimulatorServer) -> None:
    async def go() -> None:
        async with client(server.ssl_context(), connections=4, base_url=server.base_url) as c:
            # The server answers none of these until all four are inside: they must be in flight together.
            gated = await asyncio.gather(*[c.get("/gate", params={"key": "parallel", "n": 4}) for _ in range(4)])
            assert [(r.status_code, r.content) for r in gated] == [(200, b"together")] * 4
            assert len({r.content for r in await asyncio.gather(*[c.get("/peer") for _ in range(4)])}) <= 4
            bodies = await asyncio.gather(*[c.get("/big") for _ in range(3)])
            assert all(hashlib.sha256(r.content).hexdigest() == BIG_SHA for r in bodies)
            peers = await asyncio.gather(*[c.get("/peer") for _ in range(24)])
            assert {r.status_code for r in peers} == {200}
            assert len({r.content for r in peers}) <= 4  # the pool's limit holds
            assert len(pool_of(c).connections) <= 4

    run(go())


def test_aclose_with_open_connections_is_prompt(server: SimulatorServer) -> None:
    async def go() -> None:
        c = client(server.ssl_context(), connections=4, base_url=server.base_url)
        resps = await asyncio.gather(*[c.get("/gate", params={"key": "aclose", "n": 4}) for _ in range(4)])
        sockets = [r.extensions["network_stream"].get_extra_info("socket") for r in resps]
        assert len({s.fileno() for s in sockets}) == 4 and len(pool_of(c).connections) == 4
        await c.aclose()
        assert [s.fileno() for s in sockets] == [-1] * 4  # closed, not left to the garbage collector

    run(go())


# ==== stale keep-alive ============================================================================
@pytest.mark.parametrize("use_tls", [True, False], ids=["tls", "plain"])
@pytest.mark.parametrize("how", ["close", "abort"])
def test_connection_closed_by_server_while_idle_is_not_reused(tls: Tls, use_tls: bool, how: str) -> None:
    async def go() -> None:
        answered, closed = asyncio.Event(), asyncio.Event()

        async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            body = f"conn-{n}".encode()
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            if n == 1:
                await answered.wait()  # the client has the answer: the connection is idle in its pool
                if how == "close":
                    writer.close()
                else:
                    writer.transport.abort()
                closed.set()
            await srv.release.wait()

        async with raw_server(once_then_close, tls.server if use_tls else None) as srv:
            scheme = "https" if use_tls else "http"
            async with client(tls.client, base_url=f"{scheme}://127.0.0.1:{srv.port}") as c:
                first = await c.get("/")
                assert first.content == b"conn-1"
                stream = first.extensions["network_stream"]
                assert len(pool_of(c).connections) == 1  # kept alive
                assert stream.get_extra_info("is_readable") is False
                answered.set()
                await closed.wait()  # the server closes meanwhile
                await until(lambda: stream.get_extra_info("is_readable"))  # the loop reads the close
                second = await c.get("/")  # no error: the pool drops the dead connection and opens one
                assert second.status_code == 200 and second.content == b"conn-2"
                assert second.extensions["network_stream"] is not stream
                assert srv.connections == 2
                assert len(pool_of(c).connections) == 1

    run(go())


def test_bytes_sent_on_an_idle_connection_are_not_taken_as_the_next_answer(tls: Tls) -> None:
    async def go() -> None:
        answered, sent = asyncio.Event(), asyncio.Event()

        async def then_408(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()
            if n == 1:  # e.g. a server's idle timeout that says so before it closes
                await answered.wait()  # the client has the answer: the connection is idle in its pool
                writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                sent.set()
            await srv.release.wait()

        async with raw_server(then_408, tls.server) as srv:
            async with client(tls.client, base_url=f"https://127.0.0.1:{srv.port}") as c:
                first = await c.get("/")
                assert first.status_code == 200
                stream = first.extensions["network_stream"]
                assert stream.get_extra_info("is_readable") is False
                answered.set()
                await sent.wait()
                await until(lambda: stream.get_extra_info("is_readable"))  # the 408's bytes were read
                second = await c.get("/")
            assert second.status_code == 200  # the server never answered this request with a 408

    run(go())


# ==== errors map to httpx exceptions ==============================================================
def test_connection_refused_is_connect_error(tls: Tls) -> None:
    async def go() -> None:
        with socket.socket() as bound:  # bound, not listening
            bound.bind(("127.0.0.1", 0))
            async with client(tls.client) as c:
                with pytest.raises(httpx.ConnectError):
                    await c.get(f"https://127.0.0.1:{bound.getsockname()[1]}/")

    run(go())


def test_server_that_never_answers_gives_read_timeout(tls: Tls) -> None:
    async def go() -> None:
        async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            await srv.release.wait()

        async with raw_server(never, tls.server) as srv, client(tls.client, timeout=httpx.Timeout(5.0, read=0.2)) as c:
            with pytest.raises(httpx.ReadTimeout):  # the read timer (0.2 s), not the 5 s one
                await c.get(f"https://127.0.0.1:{srv.port}/")
            assert pool_of(c).connections == []  # the broken connection is dropped

    run(go())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_body_shorter_than_content_length_is_a_transport_error(tls: Tls, how: str) -> None:
    async def go() -> None:
        async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            await writer.drain()
            if how == "close":
                writer.close()
            else:
                writer.transport.abort()

        async with raw_server(short, tls.server) as srv, client(tls.client) as c:
            with pytest.raises(httpx.TransportError) as info:
                await c.get(f"https://127.0.0.1:{srv.port}/")
            assert isinstance(info.value, httpx.RemoteProtocolError | httpx.ReadError)

    run(go())


def test_server_closing_without_an_answer_is_remote_protocol_error(tls: Tls) -> None:
    async def go() -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await read_request(reader)
            writer.close()

        async with raw_server(hang_up, tls.server) as srv, client(tls.client) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(f"https://127.0.0.1:{srv.port}/")

    run(go())


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-name", "not-tls", "reset-in-handshake"])
def test_tls_failures_are_connect_errors(tls: Tls, case: str) -> None:
    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            if case == "not-tls":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            if case == "reset-in-handshake":
                writer.transport.abort()
                return
            await read_request(reader)
            writer.write(OK)
            await writer.drain()

        server_ctx = {"untrusted-ca": tls.server, "wrong-name": tls.wrong_name_server}.get(case)
        client_ctx = tls.untrusting_client if case == "untrusted-ca" else tls.client
        async with raw_server(answer, server_ctx) as srv, client(client_ctx) as c:
            # The loop's clock stands still: the error surfaces on the handshake's events, not on a
            # timeout (a graceful TLS close after a failed handshake would wait here forever).
            with clock_stopped(), pytest.raises(httpx.ConnectError) as info:
                await c.get(f"https://127.0.0.1:{srv.port}/")
            if case in ("untrusted-ca", "wrong-name"):
                assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(info.value))
            assert pool_of(c).connections == []

    run(go())


class Outcome:
    def __init__(self, raised: type[BaseException] | None, timers: Timers) -> None:
        self.raised, self.timers = raised, timers


async def get_until_timer(c: httpx.AsyncClient, url: str, timer: float) -> Outcome:
    """GET url; the loop's clock stops when the `timer`-second timer fires, so the request can end
    after it only on events: nothing may wait on another timer (or a peer that never answers)."""
    with clock_stopped(after_timer=timer) as timers:
        try:
            await c.get(url)
            raised: type[BaseException] | None = None
        except httpx.TransportError as exc:
            raised = type(exc)
    return Outcome(raised, timers)


@pytest.fixture(scope="module")
def handshake_timeout(tls: Tls) -> Outcome:
    """A server that accepts TCP and never speaks TLS, a client with connect=0.2 (run once)."""

    async def go() -> Outcome:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            await srv.release.wait()

        async with raw_server(mute, None) as srv, client(tls.client, timeout=httpx.Timeout(5.0, connect=0.2)) as c:
            return await get_until_timer(c, f"https://127.0.0.1:{srv.port}/", 0.2)

    return run(go())


@pytest.fixture(scope="module")
def frozen_read_timeout(tls: Tls) -> Outcome:
    """A frozen peer that reads the request and never answers, a client with read=0.2 (run once)."""

    async def go() -> Outcome:
        with FrozenPeer(tls, answer=False) as peer:
            async with client(tls.client, timeout=httpx.Timeout(5.0, read=0.2)) as c:
                outcome = await get_until_timer(c, f"https://127.0.0.1:{peer.port}/", 0.2)
        await asyncio.sleep(0.05)  # the peer is gone now: let the loop finish the TLS shutdown
        return outcome

    return run(go())


def test_tls_handshake_that_never_completes_is_connect_timeout(handshake_timeout: Outcome) -> None:
    assert handshake_timeout.raised is httpx.ConnectTimeout


def test_frozen_peer_gives_read_timeout(frozen_read_timeout: Outcome) -> None:
    assert frozen_read_timeout.raised is httpx.ReadTimeout


# ==== regressions: unresponsive peers and bytes on idle connections ===============================
# Before the fix aclose() waited up to 1 s for a TLS close_notify that a frozen peer never sends.


def test_aclose_is_prompt_and_closes_sockets_when_the_peer_is_frozen(tls: Tls) -> None:
    async def go() -> list[int]:
        with FrozenPeer(tls, answer=True) as peer:
            c = client(tls.client, connections=3)
            url = f"https://127.0.0.1:{peer.port}/"
            resps = await asyncio.gather(*[c.get(url) for _ in range(3)])
            assert [r.content for r in resps] == [b"ok"] * 3
            sockets = [r.extensions["network_stream"].get_extra_info("socket") for r in resps]
            assert len({s.fileno() for s in sockets}) == 3
            with clock_stopped():  # prompt: aclose() ends on events, without waiting out any timer
                await c.aclose()
            filenos = [s.fileno() for s in sockets]  # while the peer is still frozen
        await asyncio.sleep(0.05)  # the peer is gone now: let the loop finish the TLS shutdowns
        return filenos

    assert run(go()) == [-1, -1, -1], "sockets still open after aclose()"


# "On time": the error surfaced once its 0.2 s timer fired, with the loop's clock stopped from then
# on, so closing the connection did not wait for the frozen peer (it used to, ~1 s).
def test_read_timeout_surfaces_on_time_when_the_peer_is_frozen(frozen_read_timeout: Outcome) -> None:
    assert frozen_read_timeout.raised is httpx.ReadTimeout
    assert frozen_read_timeout.timers.stopped, "the 0.2 s read timer never fired"


def test_tls_handshake_timeout_surfaces_on_time(handshake_timeout: Outcome) -> None:
    assert handshake_timeout.raised is httpx.ConnectTimeout
    assert handshake_timeout.timers.stopped, "the 0.2 s connect timer never fired"
