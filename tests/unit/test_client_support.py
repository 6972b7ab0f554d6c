"""Helpers for the client unit tests (no tests here): a fake clock and a tiny routed MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
from azdo_pipeline.client.discovery import AREA_IDS

PAT = "s3cr3tpatvalue0123456789abcdefghijklmnopqrstuvwxyz"
ORG_URL = "https://dev.azure.com/fabrikam"


class FakeClock:
    """sleep() only moves the clock, so retry tests take no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeCredential:
    def __init__(self, header: str = "Basic OnRlc3Q=", refresh_to: str | None = None) -> None:
        self.header = header
        self.refresh_to = refresh_to
        self.refreshes = 0

    async def auth_header(self) -> str:
        return self.header

    async def on_unauthorized(self) -> bool:
        self.refreshes += 1
        if self.refresh_to is None:
            return False
        self.header = self.refresh_to
        return True


def areas(vssps: str, vsaex: str, audit: str, core: str, accounts: str) -> dict[str, Any]:
    bases = {"core": core, "graph": vssps, "identities": vssps, "entitlements": vsaex, "audit": audit,
             "accounts": accounts}
    return {"count": len(bases), "value": [{"id": AREA_IDS[k], "name": k, "locationUrl": v + "/"}
                                           for k, v in bases.items()]}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"content-type": "application/json; charset=utf-8", **(headers or {})})


Handler = Callable[[httpx.Request], httpx.Response]


class FakeService:
    """Routes by (method, path suffix); records every request. Discovery is built in."""

    def __init__(self, org_url: str = ORG_URL) -> None:
        self.org_url = org_url.rstrip("/")
        self.base = "https://sim.test"
        self.routes: list[tuple[str, str, Handler]] = []
        self.requests: list[httpx.Request] = []

    def urls(self) -> dict[str, Any]:
        b = self.base
        return areas(f"{b}/vssps/fabrikam", f"{b}/vsaex/fabrikam", f"{b}/audit/fabrikam", self.org_url,
                     f"{b}/app")

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes.append((method, path, handler))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url).split("?")[0]
        if url == f"{self.org_url}/_apis/resourceAreas":
            return json_response(self.urls())
        for method, path, handler in self.routes:
            if request.method == method and url.endswith(path):
                return handler(request)
        return httpx.Response(404, text="Page not found.", headers={"content-type": "text/plain"})

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and str(r.url).split("?")[0].endswith(path))


async def connect(service: FakeService | Handler, *, credential: Any = None, clock: FakeClock | None = None,
                  settings: ClientSettings | None = None) -> AzureDevOpsClient:
    import random

    org_url = service.org_url if isinstance(service, FakeService) else ORG_URL
    return await AzureDevOpsClient.connect(
        org_url, credential or FakeCredential(), settings=settings or ClientSettings(),
        transport=httpx.MockTransport(service), clock=clock or FakeClock(), rng=random.Random(1))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(aiter: Any) -> list[Any]:
    out = []
    async for page in aiter:
        out.append(page)
    return out
