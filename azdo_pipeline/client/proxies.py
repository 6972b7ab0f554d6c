"""Which HTTP proxy a request goes through, one rule for every client of the pipeline.

The Azure DevOps and Microsoft Graph clients (httpx) and msal (requests) all ask `ProxyRules`:
the organization's `proxy` setting if set, else the `HTTPS_PROXY` / `ALL_PROXY` environment
variables (`HTTP_PROXY` for plain-http URLs; lower-case names win, as in curl), except for hosts
that `NO_PROXY` lists. httpx ignores the environment once it is handed a transport (the pipeline
always hands it one), and requests stops reading it when a CA bundle is pinned, so neither is left
to decide on its own.

https URLs go through the proxy as a CONNECT tunnel: TLS runs end to end between the client and
the service, and the service's certificate is verified as without a proxy (system trust store,
plus `ca_bundle`). A TLS-inspecting proxy that re-signs traffic is trusted only when its CA is in
`ca_bundle`.

`NO_PROXY` (curl's conventions, https://curl.se/docs/manpage.html#--noproxy): comma separated host
names (`example.com` also matches its subdomains; a leading `.` or `*.` is ignored), IP addresses,
CIDR ranges (`10.0.0.0/8`), each optionally with `:port`; `*` alone bypasses the proxy for every
host.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from .errors import ConfigurationError
from .secrets import register_secret


def check_proxy_url(value: str, where: str, *, allow_credentials: bool) -> str:
    """`value` as a proxy URL (http or https scheme, a host, optional port), or ConfigurationError."""
    parts = urlsplit(value.strip() if "://" in value else f"http://{value.strip()}")
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        raise ConfigurationError(f"{where}: SOCKS proxies are not supported ({scheme}://); give the HTTP proxy "
                                 "as http://host:port")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path not in ("", "/") \
            or parts.query:
        raise ConfigurationError(f"{where}: not a proxy URL; expected http://host:port (or https://host:port)")
    if parts.username or parts.password:
        if not allow_credentials:
            raise ConfigurationError(f"{where}: must not contain credentials; put the proxy URL with its "
                                     "user name and password in the HTTPS_PROXY environment variable instead")
        register_secret(parts.password)
        register_secret(unquote(parts.password or ""))
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    auth = parts.netloc.rpartition("@")[0]
    return f"{scheme}://{auth + '@' if auth else ''}{host}{f':{port}' if port else ''}"


def _env(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key in (name.lower(), name.upper()):
        value = environ.get(key, "").strip()
        if value:
            return key, value
    return None


@dataclass(frozen=True)
class _Bypass:
    host: str  # lower case, no brackets; "" for an IP network entry
    port: int | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        return host == self.host or host.endswith("." + self.host)


def _parse_no_proxy(value: str) -> tuple[bool, tuple[_Bypass, ...]]:
    """(bypass everything, entries) of a NO_PROXY value."""
    entries: list[_Bypass] = []
    for raw in value.replace(" ", ",").split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "*":
            return True, ()
        port: int | None = None
        if item.startswith("["):  # [v6] or [v6]:port
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif item.count(":") == 1 and item.rsplit(":", 1)[1].isdigit():
            host, port = item.rsplit(":", 1)[0], int(item.rsplit(":", 1)[1])
        else:
            host = item
        try:
            entries.append(_Bypass("", port, ipaddress.ip_network(host, strict=False)))
            continue
        except ValueError:
            pass
        host = host.removeprefix("*").lstrip(".")
        if host:
            entries.append(_Bypass(host, port))
    return False, tuple(entries)


@dataclass(frozen=True)
class ProxyRules:
    """Proxy URL per URL scheme, and the hosts reached directly; see the module docstring."""

    https: str | None = None
    http: str | None = None
    bypass_all: bool = False
    bypass: tuple[_Bypass, ...] = ()

    @classmethod
    def resolve(cls, proxy: str | None = None, environ: Mapping[str, str] | None = None) -> ProxyRules:
        """The rules for one organization: its `proxy` setting (None: the environment) and NO_PROXY."""
        env = os.environ if environ is None else environ
        https: str | None
        http: str | None
        if proxy:
            https = http = check_proxy_url(proxy, "proxy", allow_credentials=False)
        else:
            found = _env(env, "https_proxy") or _env(env, "all_proxy")
            https = check_proxy_url(found[1], found[0], allow_credentials=True) if found else None
            found = _env(env, "http_proxy") or _env(env, "all_proxy")
            http = check_proxy_url(found[1], found[0], allow_credentials=True) if found else None
        no_proxy = _env(env, "no_proxy")
        bypass_all, bypass = _parse_no_proxy(no_proxy[1]) if no_proxy else (False, ())
        return cls(https=https, http=http, bypass_all=bypass_all, bypass=bypass)

    @property
    def active(self) -> bool:
        return not self.bypass_all and bool(self.https or self.http)

    def proxy_for(self, url: str | httpx.URL) -> str | None:
        """The proxy URL a request to `url` goes through, or None to connect directly."""
        if not self.active:
            return None
        parts = urlsplit(str(url))
        scheme = parts.scheme.lower()
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else None
        if proxy is None:
            return None
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if scheme == "https" else 80)
        if any(b.matches(host, port) for b in self.bypass):
            return None
        return proxy


class ProxyRouter(httpx.AsyncBaseTransport):
    """Sends each request through the transport for its proxy (or the direct one), per ProxyRules."""

    def __init__(self, rules: ProxyRules, make: Callable[[str | None], httpx.AsyncBaseTransport]) -> None:
        self._rules = rules
        self._make = make
        self._transports: dict[str | None, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self._rules.proxy_for(request.url)
        transport = self._transports.get(proxy)
        if transport is None:
            transport = self._transports[proxy] = self._make(proxy)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
