"""The request core: one httpx.AsyncClient per organization, auth, retries, throttling, errors.

Policy (reference §6):
- every request carries `X-TFS-FedAuthRedirect: Suppress`, so a bad credential gives 401, and
  any 203 or `text/html` answer is still treated as an authentication failure;
- `Retry-After` is honoured on any status (also a 200): every request of this client waits;
  `X-RateLimit-Delay` and a low `X-RateLimit-Remaining` slow the whole client down; a wait asked
  for beyond `max_wait_seconds` ends the run with ThrottledError naming it (never an hour's sleep);
- a certificate the trust store (plus `ca_bundle`) does not accept fails at once (CertificateError),
  not retried: retrying cannot fix it;
- 429, 5xx and connection failures (also a connection dropped mid-body) are retried with capped
  exponential backoff and full jitter, bounded in count (`max_retries`) and in total time
  (`max_retry_seconds`); a non-idempotent request is retried only when it surely was not
  processed (connect failure, 429);
- on 401 the credential may refresh once (`on_unauthorized()`), then AuthenticationError names
  the PAT scope the route needs.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import orjson

from .errors import (
    AuthenticationError,
    AzureDevOpsError,
    CertificateError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
)
from .netbackend import AsyncioHTTPTransport
from .proxies import ProxyRouter, ProxyRules
from .secrets import redact
from .shapes import Shape

log = logging.getLogger("azdo_pipeline.client")


@dataclass(frozen=True)
class ClientSettings:
    """Knobs of one client (one organization). Defaults suit Azure DevOps Services."""

    max_concurrency: int = 8  # requests in flight at once
    timeout: float = 60.0  # seconds per request (connect, read, write, pool)
    max_retries: int = 6  # retries of one request (not counting the first attempt)
    max_retry_seconds: float = 300.0  # total time one request may spend retrying
    # The longest wait the service may ask for (Retry-After, X-RateLimit-Delay, on any status): a
    # longer one ends the run with ThrottledError naming it, instead of holding every request.
    max_wait_seconds: float = 300.0
    backoff_base: float = 0.5  # seconds; attempt n waits uniform(0, min(cap, base * 2**n))
    backoff_cap: float = 30.0
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (corporate proxy, simulator)
    # HTTP proxy URL for this organization; None: HTTPS_PROXY / ALL_PROXY. NO_PROXY applies to both
    # (proxies.py).
    proxy: str | None = None
    user_agent: str = "azdo-pipeline/0.1"
    low_remaining_ratio: float = 0.1  # X-RateLimit-Remaining / Limit below this: spread requests
    # Keys per identitybatch request (groups for membership reads, ids for look-ups). No server
    # limit is documented (Graph's subjectlookup allows 500); a 400 halves it. GET identities
    # (where identitybatch is missing) packs at most 50 under the query-string limit.
    membership_chunk_size: int = 500
    identity_chunk_size: int = 500
    # A 200 whose body is not the route's shape (shapes.py) is read again this many times before
    # the run fails naming the route: a damaged answer is rare and a repeat of it is not noise.
    damaged_retries: int = 2
    # "asyncio": sockets and TLS of the event loop (netbackend.py, ~3x less CPU on big pages);
    # "anyio": httpcore's default backend.
    network_backend: str = "asyncio"

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("ClientSettings.max_concurrency must be at least 1")
        if self.network_backend not in ("asyncio", "anyio"):
            raise ValueError("ClientSettings.network_backend must be 'asyncio' or 'anyio'")
        if self.max_retries < 0 or self.max_retry_seconds < 0 or self.damaged_retries < 0 \
                or self.max_wait_seconds < 0:
            raise ValueError("ClientSettings retry bounds must not be negative")


@dataclass
class RequestStats:
    """What one client did; safe to log (endpoint labels are route templates, no ids or secrets)."""

    total: int = 0  # HTTP requests sent (every attempt counts)
    by_endpoint: Counter[str] = field(default_factory=Counter)  # "GET graph/users" -> n
    retries: int = 0
    throttled: int = 0  # 429s, 200s with Retry-After, delayed requests (X-RateLimit-Delay)
    bytes: int = 0  # response body bytes
    waited_seconds: float = 0.0  # client-wide pauses (Retry-After, rate limits) + retry backoff sleeps
    notes: list[str] = field(default_factory=list)  # e.g. why memberships fell back to per-group reads
    membership_mode: str = ""  # batched | per-group | mixed (set by AzureDevOpsClient.memberships)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_endpoint": dict(self.by_endpoint), "retries": self.retries,
                "throttled": self.throttled, "bytes": self.bytes,
                "waited_seconds": round(self.waited_seconds, 3), "notes": list(self.notes),
                "membership_mode": self.membership_mode}


class Credential(Protocol):
    """What the client needs from a credential (see azdo_pipeline.auth)."""

    async def auth_header(self) -> str: ...

    async def on_unauthorized(self) -> bool: ...


class Clock:
    """Time source; tests pass a fake whose sleep() only advances the clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Scope:
    """The PAT scope a route needs, as the Azure DevOps UI names it, and its OAuth scope id."""

    label: str
    scope_id: str
    note: str = ""

    def hint(self) -> str:
        return f"the PAT needs the '{self.label}' scope ({self.scope_id}){self.note}"


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    data: Any  # parsed JSON, or None for empty / non-JSON bodies (and when the caller decodes)
    url: str
    content: bytes = b""  # the raw body, for callers that decode it themselves (columnar pages)


def safe_url(url: httpx.URL | str) -> str:
    """The URL without user info (and passed through the secret redactor)."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_message(resp: httpx.Response) -> tuple[str, str]:
    """(message, typeKey) from an Azure DevOps or Microsoft Graph error answer."""
    ctype = resp.headers.get("content-type", "")
    text = ""
    try:
        text = resp.text
    except Exception:  # undecodable body: fall back to the header
        text = ""
    if "json" in ctype and text:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), dict):  # Microsoft Graph / Entra envelope
                err = body["error"]
                return str(err.get("message") or err.get("code") or ""), str(err.get("code") or "")
            if "message" in body:
                return str(body.get("message") or ""), str(body.get("typeKey") or "")
            if isinstance(body.get("value"), dict) and "message" in body["value"]:
                return str(body["value"]["message"]), ""
    header = resp.headers.get("x-tfs-serviceerror")
    if header:
        return unquote(header), ""
    if text and "html" not in ctype:
        return text.strip()[:500], ""
    return resp.reason_phrase or f"HTTP {resp.status_code}", ""


RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _damaged_error(endpoint: str, status: int, url: str, shape: Shape | None, problem: str,
                   damaged: int) -> UnexpectedResponseError:
    what = f" ({shape.what})" if shape is not None else ""
    return UnexpectedResponseError(
        f"{endpoint}: the HTTP {status} answer is not what this route returns{what}: {problem}; read {damaged} "
        f"time{'s' if damaged > 1 else ''}, none of it used. Azure DevOps does not answer so: a proxy, firewall or "
        "gateway on the way may be replacing its answers (check the proxy settings); if it persists, retry later",
        status=status, url=safe_url(url), endpoint=endpoint)


class Requester:
    """Sends requests for one organization; all services of a client share one Requester."""

    def __init__(self, credential: Credential | None, settings: ClientSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None, stats: RequestStats | None = None,
                 extra_headers: dict[str, str] | None = None) -> None:
        self.credential = credential
        self.settings = settings
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.stats = stats or RequestStats()
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        self._not_before = 0.0  # monotonic time before which no request starts (Retry-After etc.)
        headers = {"User-Agent": settings.user_agent, "Accept": "application/json",
                   "X-TFS-FedAuthRedirect": "Suppress", "X-VSS-ForceMsaPassThrough": "true"}
        headers.update(extra_headers or {})
        kwargs: dict[str, Any] = {}
        if transport is not None:
            kwargs["transport"] = transport
        else:
            ctx = make_ssl_context(settings.ca_bundle)
            limits = httpx.Limits(max_connections=settings.max_concurrency,
                                  max_keepalive_connections=settings.max_concurrency)
            kwargs["transport"] = _transport(settings, ctx, limits, ProxyRules.resolve(settings.proxy))
        # trust_env=False: the proxy rules above are the only ones (httpx ignores the environment's
        # proxies anyway once handed a transport).
        self.http = httpx.AsyncClient(
            http1=True, http2=False, timeout=httpx.Timeout(settings.timeout), headers=headers,
            follow_redirects=False, trust_env=False, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- throttling -------------------------------------------------------------------
    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` (counted once in waited_seconds)."""
        if seconds > 0:
            now = self.clock.monotonic()
            until = now + seconds
            if until > self._not_before:
                self.stats.waited_seconds += until - max(self._not_before, now)
                self._not_before = until

    async def _wait_turn(self) -> None:
        while True:
            delay = self._not_before - self.clock.monotonic()
            if delay <= 0:
                return
            await self.clock.sleep(delay)

    def _too_long(self, seconds: float, header: str, resp: httpx.Response, endpoint: str) -> ThrottledError:
        cap = self.settings.max_wait_seconds
        return ThrottledError(
            f"{endpoint}: throttled for {seconds:.0f} s by the service ({header} on HTTP {resp.status_code}); "
            f"retry later or raise the cap (setting max_wait_seconds, now {cap:.0f} s)",
            retry_after=seconds, status=resp.status_code, url=safe_url(resp.request.url), endpoint=endpoint)

    def _observe_rate_headers(self, resp: httpx.Response, endpoint: str) -> float | None:
        """Slow the client down as the rate-limit headers ask; returns Retry-After if present.

        A wait longer than `max_wait_seconds` raises ThrottledError instead of pausing the client.
        """
        h = resp.headers
        retry_after = parse_retry_after(h.get("retry-after"), self.clock.time())
        delay = _float(h.get("x-ratelimit-delay"))
        if retry_after is not None and retry_after > self.settings.max_wait_seconds:
            self.stats.throttled += 1
            raise self._too_long(retry_after, "Retry-After", resp, endpoint)
        if delay is not None and delay > self.settings.max_wait_seconds:
            self.stats.throttled += 1
            raise self._too_long(delay, "X-RateLimit-Delay", resp, endpoint)
        if retry_after is not None:
            if resp.status_code != 429:
                self.stats.throttled += 1
            log.info("%s: server asked to wait %.2fs (Retry-After, status %s)", endpoint, retry_after,
                     resp.status_code)
            self._pause(retry_after)
        if delay and delay > 0:
            # The server already delayed this request: space the next ones by as much.
            self.stats.throttled += 1
            self._pause(delay)
        remaining, limit = _float(h.get("x-ratelimit-remaining")), _float(h.get("x-ratelimit-limit"))
        if remaining is not None and limit and remaining / limit < self.settings.low_remaining_ratio:
            reset = _float(h.get("x-ratelimit-reset"))
            left = max(0.0, reset - self.clock.time()) if reset else self.settings.backoff_cap
            # Spread the remaining budget over the rest of the window.
            self._pause(min(self.settings.backoff_cap, left / max(remaining, 1.0)))
        return retry_after

    def _certificate_error(self, reason: str, url: str, endpoint: str) -> CertificateError:
        host = urlsplit(url).hostname or url
        where = (f"the CA file in ca_bundle ({self.settings.ca_bundle}) does not vouch for it"
                 if self.settings.ca_bundle else "no ca_bundle is set")
        log.error("%s: TLS certificate of %s refused: %s", endpoint, host, reason)
        return CertificateError(
            f"{endpoint}: the TLS certificate of {host} was not accepted ({reason}); {where}. Behind a "
            "TLS-inspecting proxy or with a private CA, set the organization's ca_bundle setting to that CA's "
            "PEM file; otherwise check the URL's host. Not retried: retrying cannot fix a certificate",
            status=0, url=safe_url(url), endpoint=endpoint)

    def _backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** attempt))

    # ---- the request loop -------------------------------------------------------------
    async def request(self, method: str, url: str, *, endpoint: str, scope: Scope | None,
                      params: dict[str, Any] | None = None, json_body: Any = None,
                      idempotent: bool | None = None, allow: frozenset[int] | set[int] = frozenset(),
                      auth: bool = True, headers: dict[str, str] | None = None,
                      decoder: Callable[[bytes], Any] | None = None, shape: Shape | None = None,
                      check: Callable[[Any], None] | None = None) -> Reply:
        """One logical request; returns a Reply for 2xx (and statuses in `allow`), raises otherwise.

        `decoder` replaces the JSON decoding of a successful body: it runs in a worker thread (big
        list pages go straight to Arrow, off the event loop) and its result is Reply.data. With a
        `shape` (or a decoder) a 2xx answer must be JSON of that shape: one that is not (another
        content type, an empty body, `null`, a missing list, a field of another type; a decoder's
        ValueError) is read again up to `damaged_retries` times, then UnexpectedResponseError names
        the route and what was wrong. Such a body is never taken as an empty list. `check` is a
        further test of the decoded data (e.g. one identity per key asked), failing the same way.
        """
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        started = self.clock.monotonic()
        attempt = 0
        damaged = 0
        refreshed = False
        while True:
            resp, failure = await self._send(method, url, endpoint=endpoint, params=params, json_body=json_body,
                                             auth=auth, headers=headers)
            if resp is None:
                assert failure is not None
                err: AzureDevOpsError = self._connection_error(failure, method, url, endpoint, idempotent)
                retry_after = None
            else:
                self.stats.bytes += len(resp.content)
                retry_after = self._observe_rate_headers(resp, endpoint)
                reply, classified = self._classify(resp, method, endpoint, scope, allow, decoder is None)
                err = cast(AzureDevOpsError, classified)  # None only with a reply, returned below (asserted)
                problem = None
                if reply is not None and 200 <= resp.status_code < 300 and method.upper() != "HEAD" \
                        and (shape is not None or decoder is not None):
                    problem = await self._check_body(resp, reply, decoder, shape, check)
                if problem is not None:
                    damaged += 1
                    err = _damaged_error(endpoint, resp.status_code, url, shape, problem, damaged)
                    if damaged > self.settings.damaged_retries:
                        log.warning("%s: giving up on a damaged answer: %s", endpoint, problem)
                        raise err
                    log.warning("%s: damaged answer (%s); reading it again", endpoint, problem)
                    retry_after = None
                elif reply is not None:
                    return reply
                assert err is not None
                if isinstance(err, AuthenticationError):
                    if not refreshed and self.credential is not None and await self.credential.on_unauthorized():
                        refreshed = True
                        continue
                    if self.credential is not None and not refreshed:  # the refresh just failed: say why
                        err = self._classify(resp, method, endpoint, scope, allow, False)[1] or err
                    raise err
                if problem is not None:
                    pass  # damaged: read again below, within the same bounds
                elif resp.status_code not in RETRY_STATUSES and not isinstance(err, TransientError):
                    raise err
                if resp.status_code == 429:
                    self.stats.throttled += 1
                elif not idempotent:  # a 5xx may have been processed: let the caller check first
                    raise err
            await self._before_retry(attempt, started, retry_after, endpoint, err)
            attempt += 1

    async def _send(self, method: str, url: str, *, endpoint: str, params: dict[str, Any] | None, json_body: Any,
                    auth: bool, headers: dict[str, str] | None) -> tuple[httpx.Response | None, Exception | None]:
        """One attempt on the wire, within the concurrency bound: (the response, or the transport error)."""
        async with self._sem:
            await self._wait_turn()
            req_headers = dict(headers or {})
            if auth and self.credential is not None:
                req_headers["Authorization"] = await self.credential.auth_header()
            self.stats.total += 1
            self.stats.by_endpoint[endpoint] += 1
            try:
                return await self.http.request(method, url, params=params, json=json_body, headers=req_headers), None
            except httpx.TransportError as exc:
                return None, exc

    def _connection_error(self, failure: Exception, method: str, url: str, endpoint: str,
                          idempotent: bool) -> AzureDevOpsError:
        """The error of an attempt that got no answer; raised here when retrying is not safe."""
        bad_cert = certificate_problem(failure)
        if bad_cert is not None:
            raise self._certificate_error(bad_cert, url, endpoint)
        # A connect failure means nothing was sent: safe to retry any request.
        sent = not isinstance(failure, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        what = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
        err = TransientError(f"{method} {safe_url(url)} failed: {what}", status=0, url=safe_url(url),
                             endpoint=endpoint)
        if not idempotent and sent:
            raise err
        return err

    async def _before_retry(self, attempt: int, started: float, retry_after: float | None, endpoint: str,
                            err: AzureDevOpsError) -> None:
        """Wait before the next attempt, or raise `err` when that would pass either retry bound."""
        delay = retry_after if retry_after is not None else self._backoff(attempt)
        elapsed = self.clock.monotonic() - started
        if attempt >= self.settings.max_retries or elapsed + delay > self.settings.max_retry_seconds:
            log.warning("%s: giving up after %d attempts (%.1fs): %s", endpoint, attempt + 1, elapsed, err)
            raise err
        self.stats.retries += 1
        log.warning("%s: retry %d/%d in %.2fs after %s", endpoint, attempt + 1, self.settings.max_retries,
                    delay, err.status or "connection error")
        if retry_after is None:  # Retry-After already paused the whole client
            self.stats.waited_seconds += delay
            await self.clock.sleep(delay)

    async def _check_body(self, resp: httpx.Response, reply: Reply, decoder: Callable[[bytes], Any] | None,
                          shape: Shape | None, check: Callable[[Any], None] | None) -> str | None:
        """What is wrong with a successful answer that should be JSON of `shape`, or None."""
        ctype = resp.headers.get("content-type", "")
        if "json" not in ctype.lower():
            return f"content type {ctype.split(';')[0].strip() or '(none)'}, expected application/json"
        if not resp.content.strip():
            return "an empty body"
        try:
            if decoder is not None:  # checks the shape itself while decoding (arrow_pages)
                reply.data = await asyncio.to_thread(decoder, resp.content)
            elif shape is not None:
                shape.check(reply.data)
            if check is not None:
                check(reply.data)
        except ValueError as exc:  # ShapeError, a decoder's refusal, pyarrow.ArrowInvalid
            return str(exc) or type(exc).__name__
        return None

    def _auth_hint(self, scope: Scope | None) -> str:
        """What a refused credential means: the credential says (a PAT's scope, an OAuth sign-in
        that could not be renewed); a credential that cannot say gets the route's PAT scope."""
        describe = getattr(self.credential, "refusal_hint", None)
        if callable(describe):
            return str(describe(scope))
        hint = scope.hint() if scope else "check the credential"
        return f"If the token is valid and not expired, {hint}."

    def _classify(self, resp: httpx.Response, method: str, endpoint: str, scope: Scope | None,
                  allow: frozenset[int] | set[int],
                  decode: bool = True) -> tuple[Reply | None, AzureDevOpsError | None]:
        status = resp.status_code
        url = safe_url(resp.request.url)
        ctype = resp.headers.get("content-type", "").lower()
        is_html = "text/html" in ctype
        if status == 203 or status == 401 or (is_html and status < 300):
            msg, key = ("the server answered with a sign-in page", "") if is_html or status == 203 \
                else error_message(resp)
            return None, AuthenticationError(
                f"Azure DevOps refused the credential for {endpoint} (HTTP {status}: {msg}). {self._auth_hint(scope)}",
                status=status, type_key=key, url=url, endpoint=endpoint)
        if 200 <= status < 300 or status in allow:
            data = None
            if decode and resp.content and "json" in ctype and method != "HEAD":
                try:
                    data = orjson.loads(resp.content)  # big pages: several times faster than json
                except ValueError:  # orjson.JSONDecodeError is a ValueError
                    # A body cut short that still parsed as complete HTTP: treat like a dropped read.
                    return None, TransientError(f"{endpoint}: response body is not valid JSON "
                                                f"({len(resp.content)} bytes)", status=status, url=url,
                                                endpoint=endpoint)
            return Reply(status, resp.headers, data, url, resp.content), None
        msg, key = error_message(resp)
        if status == 403:
            extra = f" ({scope.hint()} and the identity needs the permission in Azure DevOps)" if scope else ""
            return None, PermissionDeniedError(f"Permission denied for {endpoint}: {msg}{extra}",
                                               status=status, type_key=key, url=url, endpoint=endpoint)
        if status == 404:
            if "text/plain" in ctype and msg.startswith("Page not found"):
                msg = "Page not found (unknown route: check the organization URL and api-version)"
            return None, NotFoundError(f"Not found: {msg}", status=status, type_key=key, url=url,
                                       endpoint=endpoint)
        if status == 429:
            ra = parse_retry_after(resp.headers.get("retry-after"), self.clock.time())
            return None, ThrottledError(f"Throttled by Azure DevOps on {endpoint} (HTTP 429: {msg}); retry later, "
                                        "or lower the organization's concurrency", retry_after=ra,
                                        status=status, type_key=key, url=url, endpoint=endpoint)
        if status >= 500 or status == 408:
            return None, TransientError(f"{endpoint} failed with HTTP {status}: {msg}", status=status,
                                        type_key=key, url=url, endpoint=endpoint)
        return None, AzureDevOpsError(f"{endpoint} failed with HTTP {status}: {msg}", status=status,
                                      type_key=key, url=url, endpoint=endpoint)


def _transport(settings: ClientSettings, ctx: ssl.SSLContext, limits: httpx.Limits,
               rules: ProxyRules) -> httpx.AsyncBaseTransport:
    """The client's transport: direct, or routed per request through the proxy the rules name."""

    def make(proxy: str | None) -> httpx.AsyncBaseTransport:
        if settings.network_backend == "asyncio":
            return AsyncioHTTPTransport(ssl_context=ctx, limits=limits, proxy=proxy)
        return httpx.AsyncHTTPTransport(verify=ctx, limits=limits, proxy=proxy)

    return ProxyRouter(rules, make) if rules.active else make(None)


def certificate_problem(exc: BaseException) -> str | None:
    """The verification failure behind a connection error (its reason), or None for other failures."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ssl.SSLCertVerificationError):
            return str(node.verify_message or node.reason or "certificate verify failed")
        node = node.__cause__ or node.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" :")
        return reason or "certificate verify failed"
    return None


def make_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """System trust store, plus `ca_bundle` when given (an explicit setting wins over env vars)."""
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


SleepFn = Callable[[float], Awaitable[None]]
