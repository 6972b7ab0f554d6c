"""Run the simulator as a real HTTPS server on loopback (uvicorn in a background thread).

TLS is on by default because msal refuses plain-http authorities: a throwaway CA made with
`trustme` signs a leaf for 127.0.0.1 / localhost / ::1, and the CA bundle is written to a temp
directory (`ca_file`) for clients to trust (`httpx.Client(verify=server.ca_file)`).

    with SimulatorServer(world) as server:
        httpx.get(server.org_url("fabrikam") + "/_apis/resourceAreas", verify=server.ca_file)
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from .state import World

log = logging.getLogger(__name__)


class _DropFilter(logging.Filter):
    """Silence uvicorn's error log for connections the fault layer drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .faults import DroppedConnection

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_drop_filter = _DropFilter()


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport into an ASGI app (no sockets), for sync tests and tools.

    httpx only ships an async ASGI transport; this one drives it on a private event loop in a daemon
    thread (so a client that is never closed cannot keep the interpreter alive). Client address
    127.0.0.1, so the loopback-only admin API answers.
    """

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="azdo-sim-inprocess",
                                        daemon=True)
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def run() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body,
                                  extensions=request.extensions)
            resp = await self._inner.handle_async_request(inner)
            data = b"".join([chunk async for chunk in resp.stream])  # type: ignore[union-attr]
            return resp.status_code, resp.headers.raw, data

        status, headers, data = asyncio.run_coroutine_threadsafe(run(), self._loop).result()
        return httpx.Response(status, headers=headers, content=data, request=request)

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()


def in_process_client(world: World, **kwargs: Any) -> httpx.Client:
    """A sync `httpx.Client` into `create_app(world)` (kwargs go to httpx.Client, e.g. base_url)."""
    from .app import create_app

    return httpx.Client(transport=InProcessTransport(create_app(world)), **kwargs)


class SimulatorServer:
    """The simulator app over `world`, served by uvicorn on `host:port` (0 = any free port)."""

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0, tls: bool = True, *,
                 cert_dir: str | Path | None = None, log_level: str = "warning", access_log: bool = False,
                 app: Any = None) -> None:
        self.world = world
        self.host = host
        self.tls = tls
        self._requested_port = port
        self._log_level = log_level
        self._access_log = access_log
        self._app = app
        self._own_dir = cert_dir is None
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._ca: Any = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int = 0

    # ---- TLS ---------------------------------------------------------------------------
    def _make_certs(self) -> tuple[str, str]:
        import trustme

        if self._cert_dir is None:
            self._cert_dir = Path(tempfile.mkdtemp(prefix="azdo-sim-tls-"))
        self._cert_dir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="azdo-pipeline simulator")
        leaf = self._ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_path = self._cert_dir / "ca.pem"
        key_path = self._cert_dir / "server.pem"
        self._ca.cert_pem.write_to_path(str(ca_path))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(key_path))
        return str(ca_path), str(key_path)

    @property
    def ca_file(self) -> str | None:
        """PEM bundle of the throwaway CA (None without TLS)."""
        if not self.tls or self._cert_dir is None:
            return None
        return str(self._cert_dir / "ca.pem")

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the simulator's CA."""
        ctx = ssl.create_default_context()
        if self.ca_file:
            ctx.load_verify_locations(self.ca_file)
        return ctx

    # ---- URLs --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def org_url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/_sim"

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> SimulatorServer:
        if self._thread is not None:
            return self
        from .app import create_app

        app = self._app if self._app is not None else create_app(self.world)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(1024)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        kwargs: dict[str, Any] = {}
        if self.tls:
            _, pem = self._make_certs()
            kwargs.update(ssl_certfile=pem, ssl_keyfile=pem)
        # keep-alive well above uvicorn's 5 s default: a pooled client must not race an idle close
        config = uvicorn.Config(app, log_level=self._log_level, access_log=self._access_log,
                                lifespan="off", timeout_graceful_shutdown=2, timeout_keep_alive=120,
                                **kwargs)
        logging.getLogger("uvicorn.error").addFilter(_drop_filter)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"azdo-sim:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError("the simulator server failed to start (see the uvicorn log)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            # No graceful wait: an idle keep-alive TLS client that is not reading never answers the
            # close_notify, so uvicorn would wait out timeout_graceful_shutdown on every stop.
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._thread = None
        self._server = None
        if self._own_dir and self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_forever(world: World, host: str = "127.0.0.1", port: int = 8765, tls: bool = True, *,
                  cert_dir: str | Path | None = None, on_ready: Any = None,
                  log_level: str = "warning", access_log: bool = False) -> None:
    """Serve until Ctrl-C (KeyboardInterrupt); `on_ready(server)` runs once it accepts connections."""
    server = SimulatorServer(world, host, port, tls, cert_dir=cert_dir, log_level=log_level,
                             access_log=access_log)
    server.start()
    try:
        if on_ready is not None:
            on_ready(server)
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
