"""Credentials for Azure DevOps (PAT, OAuth through msal) and Microsoft Graph (client credentials).

- `PatCredential`: HTTP Basic with an empty user name (reference §7).
- `OAuthCredential`: a person logs in once (`login()`: authorization-code flow with a loopback
  redirect listener, or device code on headless machines); the msal token cache is kept in a
  file with mode 0600 outside the repository (default `~/.azdo-pipeline/<org>.msal.json`), and
  later runs refresh silently through the cached refresh token, writing the cache back when msal
  changed it.
- `GraphAppCredential`: an application token (client credentials) for Microsoft Graph
  (`{graph_host}/.default`), used for Entra group provisioning.

msal refuses http authorities, so the authority host is always https (the simulator serves TLS on
loopback); a CA bundle, when set, applies to msal too (`requests.Session(verify=ca_bundle)`,
`trust_env=False` so REQUESTS_CA_BUNDLE cannot override it), and so do the proxy rules of the
Azure DevOps client (client/proxies.py: the organization's `proxy`, HTTPS_PROXY, NO_PROXY).
Secrets never appear in repr/str, and every token msal hands back is registered with the redactor.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import logging
import os
import re
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .client.errors import AuthenticationError, ConfigurationError
from .client.proxies import ProxyRules
from .client.secrets import Secret, redact, register_secret

log = logging.getLogger("azdo_pipeline.auth")

AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
AZURE_DEVOPS_SCOPE = f"{AZURE_DEVOPS_RESOURCE}/user_impersonation"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_HOST = "https://graph.microsoft.com"
REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached access token is renewed


class _LoopLock:
    """An asyncio.Lock per event loop: a credential outlives the asyncio.run() of one sync."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(id(loop))
        if lock is None:
            if len(self._locks) > 16:  # old loops are gone; do not grow without bound
                self._locks.clear()
            lock = self._locks[id(loop)] = asyncio.Lock()
        return lock


def default_token_cache(org: str) -> Path:
    return Path.home() / ".azdo-pipeline" / f"{org}.msal.json"


# ---- PAT ------------------------------------------------------------------------------
class PatCredential:
    """A personal access token, sent as HTTP Basic with an empty user name."""

    def __init__(self, pat: str | Secret) -> None:
        secret = pat if isinstance(pat, Secret) else Secret(pat.strip())
        if not secret.reveal():
            raise ConfigurationError("the personal access token is empty")
        self._pat = secret
        self._header = Secret("Basic " + base64.b64encode(f":{secret.reveal()}".encode()).decode())

    @classmethod
    def from_env(cls, env_var: str, environ: Mapping[str, str] | None = None) -> PatCredential:
        env = os.environ if environ is None else environ
        value = env.get(env_var, "")
        if not value.strip():
            raise ConfigurationError(f"environment variable {env_var} (auth.pat_env) is not set; "
                                     "export the personal access token in it")
        return cls(value)

    async def auth_header(self) -> str:
        return self._header.reveal()

    async def on_unauthorized(self) -> bool:
        return False  # a PAT cannot be refreshed

    def refusal_hint(self, scope: Any) -> str:
        need = scope.hint() if scope is not None else "check the token"
        return f"If the PAT is valid and not expired, {need}."

    def __repr__(self) -> str:
        return "PatCredential(pat='***')"

    __str__ = __repr__


# ---- OAuth settings and msal wiring ---------------------------------------------------------
@dataclass(frozen=True)
class OAuthSettings:
    tenant_id: str
    client_id: str
    client_secret: Secret | None = field(default=None, repr=False)
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_host: str = DEFAULT_GRAPH_HOST
    token_cache: Path | None = None  # None: ~/.azdo-pipeline/<org>.msal.json
    ca_bundle: str | None = None
    proxy: str | None = None  # HTTP proxy URL; None: HTTPS_PROXY / ALL_PROXY (client/proxies.py)

    def __post_init__(self) -> None:
        for name in ("authority_host", "graph_host"):
            value = getattr(self, name)
            if urlsplit(value).scheme != "https":
                raise ConfigurationError(f"auth.{name} must be an https URL (msal refuses anything else); "
                                         f"got {value!r}")

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"


def _is_well_known(host_url: str) -> bool:
    from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

    return (urlsplit(host_url).hostname or "") in WELL_KNOWN_AUTHORITY_HOSTS


def _http_client(ca_bundle: str | None, proxy: str | None = None) -> Any:
    import requests

    rules = ProxyRules.resolve(proxy)

    class Session(requests.Session):
        # msal asks through session.get/post, which come here: the proxy for each URL is the one
        # the Azure DevOps client would use (proxies.py), also when trust_env is off below. A None
        # value makes requests connect directly even where its own environment lookup would not.
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            target = rules.proxy_for(url.decode() if isinstance(url, bytes) else url)
            kwargs.setdefault("proxies", {"http": target, "https": target})
            return super().request(method, url, *args, **kwargs)

    session = Session()
    if ca_bundle:
        # msal's own verify= loses to REQUESTS_CA_BUNDLE; an explicit session does not.
        session.trust_env = False
        session.verify = ca_bundle
    return session


def build_msal_app(settings: OAuthSettings, *, cache: Any = None, public: bool | None = None) -> Any:
    """A msal app for `settings` (confidential when a secret is set, unless public=True).

    Note: the constructor fetches the authority's openid-configuration (network I/O).
    """
    import msal

    kwargs: dict[str, Any] = {"authority": settings.authority, "token_cache": cache,
                              "http_client": _http_client(settings.ca_bundle, settings.proxy)}
    if not _is_well_known(settings.authority_host):
        kwargs["instance_discovery"] = False  # otherwise msal asks login.microsoftonline.com about it
    use_public = (settings.client_secret is None) if public is None else public
    try:
        if use_public:
            return msal.PublicClientApplication(settings.client_id, **kwargs)
        if settings.client_secret is None:
            raise ConfigurationError("auth.client_secret_env must name a variable holding the client secret")
        return msal.ConfidentialClientApplication(settings.client_id,
                                                  client_credential=settings.client_secret.reveal(),
                                                  azure_region=False, **kwargs)
    except ValueError as exc:  # msal: bad authority, unknown tenant, unreachable discovery
        why = explain_aadsts(str(exc))
        raise AuthenticationError(f"cannot use the Entra authority {settings.authority}: {why or exc}") from None
    except OSError as exc:  # requests' SSLError / ConnectionError (a RequestException is an OSError)
        raise AuthenticationError(_authority_unreachable(settings, exc)) from None


def _authority_unreachable(settings: OAuthSettings, exc: BaseException) -> str:
    text = redact(str(exc))
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in type(exc).__name__:
        fix = ("its TLS certificate was not accepted: set the organization's ca_bundle to the PEM file of the CA "
               "that signs it (a TLS-inspecting proxy's, or the simulator's)"
               + (f"; the one set ({settings.ca_bundle}) does not vouch for it" if settings.ca_bundle else ""))
    else:
        fix = ("it could not be reached: check auth.authority_host and that this machine reaches it (set "
               "HTTPS_PROXY / NO_PROXY or the organization's proxy on corporate networks)")
    return f"cannot sign in at the Entra authority {settings.authority_host}: {fix}"


# Entra's error codes a person meets here, explained with the fix (codes: learn.microsoft.com/entra/
# identity-platform/reference-error-codes). A code not listed keeps Entra's own description.
_RELOGIN = "sign in again with `azdo-pipeline login --org {org}`"
AADSTS_HELP: dict[str, str] = {
    "50173": "the sign-in was revoked (the password was changed or reset, or an administrator revoked the "
             "user's sessions); " + _RELOGIN,
    "70008": "the refresh token expired (unused for 90 days) or was revoked; " + _RELOGIN,
    "700082": "the refresh token expired after 90 days without use; " + _RELOGIN,
    "700084": "the refresh token expired; " + _RELOGIN,
    "50078": "the tenant now requires multi-factor authentication; " + _RELOGIN,
    "50076": "the tenant now requires multi-factor authentication; " + _RELOGIN,
    "50058": "no signed-in session; " + _RELOGIN,
    "65001": "consent is missing: an administrator must grant the app its permissions (Azure DevOps "
             "user_impersonation), then " + _RELOGIN,
    "700016": "no application with this client id exists in the tenant: check auth.client_id (the app "
              "registration's Application (client) ID) and auth.tenant_id",
    "90002": "the tenant was not found: check auth.tenant_id (the directory id or a verified domain)",
    "7000215": "the client secret is wrong: put the app registration's current secret value (not its id) in "
               "the variable auth.client_secret_env names",
    "7000222": "the client secret has expired: create a new one in the app registration and put it in the "
               "variable auth.client_secret_env names",
    "50011": "the redirect URI is not registered: add http://localhost (platform 'Mobile and desktop "
             "applications') to the app registration",
    "50105": "the signed-in user is not assigned to the app: an administrator must assign them",
    "53003": "a Conditional Access policy blocked the sign-in: ask the tenant administrator",
    "500011": "Azure DevOps is not available in this tenant (resource principal not found): check auth.tenant_id",
    "50196": "Entra is throttling or temporarily unavailable; retry later",
}


def explain_aadsts(text: str, org: str | None = None) -> str | None:
    """The explanation and fix of the first AADSTS code in `text`, or None."""
    m = re.search(r"AADSTS(\d+)", text or "")
    if not m or m.group(1) not in AADSTS_HELP:
        return None
    return f"AADSTS{m.group(1)}: " + AADSTS_HELP[m.group(1)].format(org=org or "<organization>")


def _check_result(result: Any, what: str, org: str | None = None) -> dict[str, Any]:
    if not isinstance(result, dict) or "access_token" not in result:
        err = result.get("error", "") if isinstance(result, dict) else ""
        desc = result.get("error_description", "") if isinstance(result, dict) else ""
        first = redact(desc.splitlines()[0]) if desc else ""
        if isinstance(result, dict) and result.get("suberror") == "consent_required" and "AADSTS" not in desc:
            first = f"AADSTS65001 {first}"
        why = explain_aadsts(first, org)
        raise AuthenticationError(f"{what} failed: {why} (Entra said: {err} {first})" if why
                                  else f"{what} failed: {err} {first}".strip())
    register_secret(result.get("access_token"))
    register_secret(result.get("refresh_token"))
    register_secret(result.get("id_token"))
    return result


# ---- token cache file ------------------------------------------------------------------
class TokenCacheFile:
    """A msal SerializableTokenCache persisted in a 0600 file (directory 0700)."""

    def __init__(self, path: Path) -> None:
        import msal

        self.path = Path(path).expanduser()
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        if self.path.exists():
            self._check_mode()
            self.cache.deserialize(self.path.read_text(encoding="utf-8"))
            self._register_secrets()

    def _check_mode(self) -> None:
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("token cache %s had mode %o; tightening to 0600", self.path, mode)
            os.chmod(self.path, 0o600)

    def _register_secrets(self) -> None:
        with contextlib.suppress(Exception):
            data = json.loads(self.cache.serialize())
            for section in ("AccessToken", "RefreshToken", "IdToken"):
                for entry in (data.get(section) or {}).values():
                    register_secret(entry.get("secret"))

    def save(self, *, force: bool = False) -> None:
        with self._lock:
            if not (force or self.cache.has_state_changed):
                return
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".msal-", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(self.cache.serialize())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.cache.has_state_changed = False

    def __repr__(self) -> str:
        return f"TokenCacheFile({str(self.path)!r})"


# ---- OAuth credential --------------------------------------------------------------------
class OAuthCredential:
    """Delegated Azure DevOps token from a cached login, refreshed silently."""

    def __init__(self, settings: OAuthSettings, org: str, *,
                 app_factory: Callable[..., Any] = build_msal_app) -> None:
        self.settings = settings
        self.org = org
        self.cache_file = TokenCacheFile(settings.token_cache or default_token_cache(org))
        self._factory = app_factory
        self._apps: dict[bool, Any] = {}
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._lock = _LoopLock()
        self.refresh_problem: str | None = None  # why the last forced refresh failed (said on a refusal)

    def __repr__(self) -> str:
        return (f"OAuthCredential(org={self.org!r}, tenant_id={self.settings.tenant_id!r}, "
                f"client_id={self.settings.client_id!r}, token_cache={str(self.cache_file.path)!r})")

    __str__ = __repr__

    def _app(self, public: bool) -> Any:
        if public not in self._apps:
            self._apps[public] = self._factory(self.settings, cache=self.cache_file.cache, public=public)
        return self._apps[public]

    def _silent(self, force_refresh: bool) -> dict[str, Any]:
        # Logged in with a secret (auth code) -> confidential app; device code -> public app.
        kinds = [False, True] if self.settings.client_secret is not None else [True]
        last: Any = None
        for public in kinds:
            app = self._app(public)
            accounts = app.get_accounts()
            if not accounts:
                continue
            # _with_error: a refused refresh (revoked, expired) comes back with Entra's reason,
            # where acquire_token_silent gives None and the reason is lost.
            silent = getattr(app, "acquire_token_silent_with_error", None) or app.acquire_token_silent
            last = silent([AZURE_DEVOPS_SCOPE], account=accounts[0], force_refresh=force_refresh)
            if isinstance(last, dict) and "access_token" in last:
                self.cache_file.save()
                self.refresh_problem = None
                return _check_result(last, "silent token refresh", self.org)
        self.cache_file.save()
        if isinstance(last, dict) and last.get("error"):
            _check_result(last, f"refreshing the OAuth token for {self.org}", self.org)
        raise AuthenticationError(
            f"no usable login for organization {self.org!r} in {self.cache_file.path}; "
            f"run `azdo-pipeline login --org {self.org}` (add --device-code on a headless machine)")

    async def _renew(self, force_refresh: bool) -> None:
        result = await asyncio.to_thread(self._silent, force_refresh)
        self._token = Secret(result["access_token"])
        self._expires_at = time.time() + float(result.get("expires_in") or 3599)

    async def auth_header(self) -> str:
        async with self._lock.get():
            if self._token is None or time.time() > self._expires_at - REFRESH_MARGIN:
                await self._renew(force_refresh=False)
            assert self._token is not None
            return f"Bearer {self._token.reveal()}"

    async def on_unauthorized(self) -> bool:
        """Force a refresh through the refresh token; True when a new token came back."""
        async with self._lock.get():
            old = self._token
            try:
                await self._renew(force_refresh=True)
            except AuthenticationError as exc:
                log.warning("token refresh after 401 failed: %s", exc)
                self.refresh_problem = exc.message
                return False
            return self._token != old

    def refusal_hint(self, scope: Any) -> str:
        """What a refusal of this credential means (the transport's message): never a PAT scope."""
        if self.refresh_problem:
            return f"The OAuth token was refused and could not be renewed: {self.refresh_problem}"
        return (f"The OAuth token of {self.org} was refused although valid: the signed-in user may have lost "
                "access to the organization, or the app registration lacks the Azure DevOps permission "
                f"(user_impersonation); check both, then sign in again with `azdo-pipeline login --org {self.org}`")


class GraphAppCredential:
    """Application token (client credentials) for Microsoft Graph: scope `{graph_host}/.default`."""

    def __init__(self, settings: OAuthSettings, *, app_factory: Callable[..., Any] = build_msal_app) -> None:
        if settings.client_secret is None:
            raise ConfigurationError("Entra group provisioning needs auth.client_secret_env (client credentials)")
        self.settings = settings
        self._factory = app_factory
        self._app: Any = None
        self._lock = _LoopLock()

    def __repr__(self) -> str:
        return f"GraphAppCredential(client_id={self.settings.client_id!r}, graph_host={self.settings.graph_host!r})"

    __str__ = __repr__

    def _acquire(self) -> dict[str, Any]:
        if self._app is None:
            self._app = self._factory(self.settings, cache=None, public=False)
        result = self._app.acquire_token_for_client(scopes=[f"{self.settings.graph_host.rstrip('/')}/.default"])
        return _check_result(result, "client-credentials token for Microsoft Graph")

    async def auth_header(self) -> str:
        async with self._lock.get():  # msal caches the app token until it nears expiry
            result = await asyncio.to_thread(self._acquire)
        return f"Bearer {result['access_token']}"

    async def on_unauthorized(self) -> bool:
        return False


# ---- login (once, interactively) ----------------------------------------------------------
class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    """Receives the sign-in answer: a form POST (response_mode=form_post, keeps the code out of
    URLs and browser history) or, from older setups, a GET with the code in the query."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)).decode("utf-8", "replace")
        self._answer(parse_qs(body))

    def do_GET(self) -> None:
        self._answer(parse_qs(urlsplit(self.path).query))

    def _answer(self, query: dict[str, list[str]]) -> None:
        if "code" in query or "error" in query:
            self.server.auth_response = {k: v[0] for k, v in query.items()}  # type: ignore[attr-defined]
            body = b"<html><body>Signed in. You can close this window.</body></html>"
        else:
            body = b"<html><body>Waiting for the sign-in redirect.</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the query string holds the code
        return


def login(settings: Any, org: str | None = None, *, device_code: bool = False,
          open_url: Callable[[str], Any] | None = None, say: Callable[[str], Any] = print,
          port: int = 0, timeout: float = 300.0, environ: Mapping[str, str] | None = None,
          app_factory: Callable[..., Any] = build_msal_app) -> Path:
    """Log in once for `org` and store the msal token cache; returns the cache path.

    settings: OAuthSettings, or an OrganizationConfig with auth.method oauth (org defaults to its
    name; the client secret is read from its environment variable).
    Authorization code (default): listens on 127.0.0.1 for the redirect (response_mode=form_post),
    opens (and prints) the sign-in URL. device_code=True prints a code to enter on another machine.
    """
    if not isinstance(settings, OAuthSettings):
        org = org or settings.name
        settings = oauth_settings(settings, environ)
    if not org:
        raise ConfigurationError("login needs the organization name")
    cache_file = TokenCacheFile(settings.token_cache or default_token_cache(org))
    if device_code:
        app = app_factory(settings, cache=cache_file.cache, public=True)
        flow = app.initiate_device_flow(scopes=[AZURE_DEVOPS_SCOPE])
        if "user_code" not in flow:
            desc = redact(str(flow.get("error_description") or flow.get("error") or flow))
            why = explain_aadsts(desc, org)
            raise AuthenticationError(f"device-code login could not start: {why} (Entra said: {desc.splitlines()[0]})"
                                      if why else f"device-code login could not start: {desc}")
        say(flow.get("message") or f"Go to {flow.get('verification_uri')} and enter {flow['user_code']}")
        flow["expires_at"] = min(float(flow.get("expires_at") or time.time() + timeout), time.time() + timeout)
        result = app.acquire_token_by_device_flow(flow)
    else:
        app = app_factory(settings, cache=cache_file.cache)
        server = http.server.HTTPServer(("127.0.0.1", port), _RedirectHandler)
        server.auth_response = None  # type: ignore[attr-defined]
        server.timeout = 1.0
        redirect_uri = f"http://localhost:{server.server_address[1]}/"
        try:
            flow = app.initiate_auth_code_flow([AZURE_DEVOPS_SCOPE], redirect_uri=redirect_uri,
                                               response_mode="form_post")
            say(f"Sign in to Azure DevOps ({org}) in your browser:\n{flow['auth_uri']}")
            opener = open_url or webbrowser.open
            threading.Thread(target=opener, args=(flow["auth_uri"],), daemon=True).start()
            deadline = time.monotonic() + timeout
            while server.auth_response is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
                server.handle_request()
            response = server.auth_response  # type: ignore[attr-defined]
        finally:
            server.server_close()
        if response is None:
            raise AuthenticationError(f"no sign-in redirect arrived within {timeout:.0f}s")
        if "error" in response:
            desc = redact(response.get("error_description", ""))
            why = explain_aadsts(desc, org)
            raise AuthenticationError(f"sign-in failed: {why} (Entra said: {response.get('error')} {desc})" if why
                                      else f"sign-in failed: {response.get('error')} {desc}".strip())
        try:
            result = app.acquire_token_by_auth_code_flow(flow, response)
        except ValueError as exc:  # state mismatch and friends
            raise AuthenticationError(f"sign-in response rejected: {exc}") from None
    _check_result(result, "login")
    cache_file.save(force=True)
    say(f"Logged in; token cache written to {cache_file.path} (mode 0600).")
    return cache_file.path


# ---- from configuration ---------------------------------------------------------------------
def oauth_settings(org: Any, environ: Mapping[str, str] | None = None) -> OAuthSettings:
    """OAuthSettings of an OrganizationConfig whose auth.method is oauth (secret read from env)."""
    from .config import OAuthAuth

    auth = org.auth
    if not isinstance(auth, OAuthAuth):
        raise ConfigurationError(f"organization {org.name}: auth.method is not oauth")
    env = os.environ if environ is None else environ
    secret = None
    if auth.client_secret_env:
        value = env.get(auth.client_secret_env, "")
        if not value:
            raise ConfigurationError(f"environment variable {auth.client_secret_env} (auth.client_secret_env of "
                                     f"{org.name}) is not set; export the Entra app's client secret in it")
        secret = Secret(value)
    return OAuthSettings(tenant_id=auth.tenant_id, client_id=auth.client_id, client_secret=secret,
                         authority_host=auth.authority_host, graph_host=auth.graph_host,
                         token_cache=org.token_cache_path(), ca_bundle=org.ca_bundle,
                         proxy=org.proxy)


def credential_from_config(org: Any, environ: Mapping[str, str] | None = None) -> PatCredential | OAuthCredential:
    """The Azure DevOps credential an OrganizationConfig describes."""
    from .config import PatAuth

    if isinstance(org.auth, PatAuth):
        return PatCredential.from_env(org.auth.pat_env, environ)
    return OAuthCredential(oauth_settings(org, environ), org.name)


def login_from_config(org_name: str, *, device_code: bool = False, config_path: str | Path | None = None,
                      **kwargs: Any) -> Path:
    """What `azdo-pipeline login --org NAME [--device-code]` runs: load the configuration, check the
    organization uses OAuth, log in once and write its token cache."""
    from .config import OAuthAuth, load_config

    org = load_config(config_path).org(org_name)
    if not isinstance(org.auth, OAuthAuth):
        raise ConfigurationError(f"organization {org.name} uses auth.method: pat; there is nothing to log in to "
                                 "(set auth.method: oauth with tenant_id and client_id to use OAuth)")
    return login(org, device_code=device_code, **kwargs)


credential_for = credential_from_config  # the name the Dagster resource layer uses
