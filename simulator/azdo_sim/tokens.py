"""Tokens issued by the simulated Entra: access tokens, refresh tokens, authorization and device codes.

Access tokens are JWT-shaped but unsigned (`alg: none`): clients never validate Entra access tokens
themselves, and the simulator validates by looking the token up in the store it was issued from, so
revocation and expiry work exactly and a hand-made JWT is never accepted. Everything is kept on
`world.token_store` (attached lazily) and timed by `world.clock`, so tests move time forward to
expire tokens. Callers hold `world.lock` around store mutations (the routes do).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .http import FULL_ACCESS, Caller
from .state import World, b64url, b64url_decode

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"  # Azure DevOps' application id in Entra
GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Route audience names (what app.py passes) -> the `aud` claim of tokens for that resource.
AUDIENCES = {"azure_devops": ADO_RESOURCE, "msgraph": GRAPH_RESOURCE}


@dataclass(slots=True)
class AccessToken:
    token: str = field(repr=False)
    uti: str  # unique token id (the real `uti` claim)
    audience: str  # azure_devops | msgraph
    client_id: str
    oid: str  # subject: the user (delegated) or the app's service principal (app-only)
    delegated: bool
    scopes: frozenset[str]  # `scp` (delegated), short names: user_impersonation, vso.graph, User.Read
    roles: frozenset[str]  # `roles` (app-only): GroupMember.ReadWrite.All
    issued: datetime
    expires: datetime
    revoked: bool = False


@dataclass(slots=True)
class RefreshToken:
    token: str = field(repr=False)
    client_id: str
    oid: str
    issued: datetime
    expires: datetime
    used: bool = False  # rotated: each redemption returns a new one and retires this one
    revoked: bool = False


@dataclass(slots=True)
class AuthCode:
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str  # as requested at /authorize
    oid: str  # the signed-in user
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    issued: datetime
    expires: datetime
    used: bool = False


@dataclass(slots=True)
class DeviceCode:
    device_code: str = field(repr=False)
    user_code: str
    client_id: str
    scope: str
    issued: datetime
    expires: datetime
    interval: int
    polls: int = 0
    approved_oid: str | None = None
    declined: bool = False
    redeemed: bool = False


@dataclass(slots=True)
class Throttle:
    """A knob: the next `count` requests answer 429 with `Retry-After: retry_after`."""

    count: int = 0
    retry_after: int = 1

    def take(self) -> int | None:
        if self.count <= 0:
            return None
        self.count -= 1
        return self.retry_after


class TokenStore:
    """Everything Entra has issued, plus the Entra-side knobs (lifetimes, throttles, device flow)."""

    def __init__(self) -> None:
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.device_codes: dict[str, DeviceCode] = {}
        self.user_codes: dict[str, str] = {}  # user code -> device code
        # Lifetimes as Entra's defaults: AT ~1 h, RT 90 days (sliding), code 10 min, device code 15 min.
        self.access_token_lifetime = timedelta(hours=1)
        self.refresh_token_lifetime = timedelta(days=90)
        self.code_lifetime = timedelta(minutes=10)
        self.device_code_lifetime = timedelta(minutes=15)
        self.device_poll_interval = 5  # seconds, what Entra sends; tests lower it
        # None: a device code waits for approval (admin route or the deviceauth page);
        # n: it is approved as the app's signed-in user on the n-th pending poll.
        self.device_auto_approve_after: int | None = None
        self.token_throttle = Throttle()  # POST /{tenant}/oauth2/v2.0/token
        self.graph_throttle = Throttle()  # Microsoft Graph /v1.0/...
        self._issued = 0

    # ---- issuing -----------------------------------------------------------------------
    def issue_access_token(self, world: World, *, audience: str, client_id: str, oid: str,
                           delegated: bool, scopes: frozenset[str] = frozenset(),
                           roles: frozenset[str] = frozenset(), issuer_host: str = "",
                           extra_claims: dict | None = None) -> AccessToken:
        now = world.clock.now()
        self._maybe_prune(now)
        exp = now + self.access_token_lifetime
        uti = b64url(secrets.token_hex(12))[:22]
        claims: dict = {
            "aud": AUDIENCES[audience],
            # Azure DevOps and Graph accept v1 tokens, whose issuer is sts.windows.net.
            "iss": f"https://sts.windows.net/{world.tenant_id}/",
            "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(exp.timestamp()),
            "appid": client_id, "appidacr": "1" if not delegated else "0",
            "idp": f"https://sts.windows.net/{world.tenant_id}/",
            "oid": oid, "sub": oid, "tid": world.tenant_id, "uti": uti, "ver": "1.0",
        }
        if delegated:
            claims["scp"] = " ".join(sorted(scopes))
        elif roles:
            claims["roles"] = sorted(roles)
        claims.update(extra_claims or {})
        token = unsigned_jwt(claims, typ="JWT")
        rec = AccessToken(token, uti, audience, client_id, oid, delegated, frozenset(scopes),
                          frozenset(roles), now, exp)
        self.access_tokens[token] = rec
        return rec

    def issue_refresh_token(self, world: World, *, client_id: str, oid: str) -> RefreshToken:
        now = world.clock.now()
        tok = "1.A" + secrets.token_urlsafe(96)
        rec = RefreshToken(tok, client_id, oid, now, now + self.refresh_token_lifetime)
        self.refresh_tokens[tok] = rec
        return rec

    def issue_code(self, world: World, *, client_id: str, redirect_uri: str, scope: str, oid: str,
                   nonce: str | None, code_challenge: str | None,
                   code_challenge_method: str | None) -> AuthCode:
        now = world.clock.now()
        code = "1.A" + secrets.token_urlsafe(64)
        rec = AuthCode(code, client_id, redirect_uri, scope, oid, nonce, code_challenge,
                       code_challenge_method, now, now + self.code_lifetime)
        self.codes[code] = rec
        return rec

    def issue_device_code(self, world: World, *, client_id: str, scope: str) -> DeviceCode:
        now = world.clock.now()
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        while True:
            user_code = "".join(secrets.choice(alphabet) for _ in range(9))
            if user_code not in self.user_codes:
                break
        rec = DeviceCode("DAQABIQEAAA" + secrets.token_urlsafe(96), user_code, client_id, scope, now,
                         now + self.device_code_lifetime, self.device_poll_interval)
        self.device_codes[rec.device_code] = rec
        self.user_codes[user_code] = rec.device_code
        return rec

    def device_by_user_code(self, user_code: str) -> DeviceCode | None:
        dc = self.user_codes.get(user_code.strip().upper().replace("-", ""))
        return self.device_codes.get(dc) if dc else None

    # ---- revocation --------------------------------------------------------------------
    def revoke(self, *, client_id: str | None = None, oid: str | None = None, token: str | None = None,
               access_tokens: bool = True, refresh_tokens: bool = True) -> int:
        """Revoke matching tokens (all filters must match; no filter = everything). Returns a count."""
        n = 0
        stores: list[dict] = []
        if access_tokens:
            stores.append(self.access_tokens)
        if refresh_tokens:
            stores.append(self.refresh_tokens)
        for store in stores:
            for tok, rec in store.items():
                if token is not None and tok != token:
                    continue
                if client_id is not None and rec.client_id != client_id:
                    continue
                if oid is not None and rec.oid != oid:
                    continue
                if not rec.revoked:
                    rec.revoked = True
                    n += 1
        return n

    def _maybe_prune(self, now: datetime) -> None:
        """Forget tokens long past expiry so a long-running simulator does not grow without bound."""
        self._issued += 1
        if self._issued % 2000:
            return
        horizon = now - timedelta(days=1)
        self.access_tokens = {k: v for k, v in self.access_tokens.items() if v.expires > horizon}
        self.refresh_tokens = {k: v for k, v in self.refresh_tokens.items() if v.expires > horizon}
        self.codes = {k: v for k, v in self.codes.items() if v.expires > horizon}
        self.device_codes = {k: v for k, v in self.device_codes.items() if v.expires > horizon}
        self.user_codes = {k: v for k, v in self.user_codes.items() if v in self.device_codes}


def store_of(world: World) -> TokenStore:
    """The world's token store, created on first use."""
    if world.token_store is None:
        with world.lock:
            if world.token_store is None:
                world.token_store = TokenStore()
    return world.token_store


def unsigned_jwt(claims: dict, *, typ: str = "JWT") -> str:
    """`header.payload.` with `alg: none` (no signature)."""
    header = {"typ": typ, "alg": "none"}
    return (f"{b64url(json.dumps(header, separators=(',', ':')))}."
            f"{b64url(json.dumps(claims, separators=(',', ':')))}.")


def decode_claims(token: str) -> dict | None:
    """The payload of a JWT-shaped token, or None when it is not one (no verification)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def diagnose(world: World, token: str, audience: str) -> str | None:
    """Why `token` is not valid for `audience`: malformed | unknown | revoked | expired | audience;
    None when it is valid."""
    store = store_of(world)
    with world.lock:
        rec = store.access_tokens.get(token)
        now = world.clock.now()
    if rec is None:
        return "malformed" if decode_claims(token) is None else "unknown"
    if rec.revoked:
        return "revoked"
    if now >= rec.expires or now < rec.issued - timedelta(minutes=5):
        return "expired"
    if rec.audience != audience:
        return "audience"
    return None


def ado_scopes(rec: AccessToken) -> frozenset[str]:
    """Azure DevOps scopes granted by an Entra token.

    `user_impersonation` (what `.default` grants) is full delegated access; granular `vso.*` scopes
    are taken as they are. App-only tokens (a service principal) act with the principal's own
    Azure DevOps permissions, which is full scope access as far as scopes go.
    """
    if not rec.delegated or "user_impersonation" in rec.scopes or ".default" in rec.scopes:
        return frozenset({FULL_ACCESS})
    return frozenset(s for s in rec.scopes if s.startswith("vso."))


def _storage_key(world: World, oid: str, org: str | None) -> str | None:
    """Storage key of the subject with Entra object id `oid` in `org` (first org that has it when
    no org is named, e.g. app.vssps routes)."""
    orgs = [world.org(org)] if org is not None else list(world.orgs.values())
    for o in orgs:
        if o is None:
            continue
        desc = o.by_origin_id.get(oid)
        ident = o.identities.get(desc) if desc else None
        if ident is not None and ident.subject_kind != "group":
            return ident.storage_key
    return None


def verify_bearer(world: World, token: str, audience: str, org: str | None = None) -> Caller | None:
    """Caller for a valid, unexpired token issued for `audience` ("azure_devops" or "msgraph"), else None.

    Azure DevOps: `user_key` is the storage key (in `org`) of the user or `aadsp` service principal
    whose Entra object id is the token's `oid`, None when that subject is not in the organization.
    Microsoft Graph: `user_key` is None; `scopes` is the delegated `scp`, `roles` the app roles.
    """
    if diagnose(world, token, audience) is not None:
        return None
    store = store_of(world)
    with world.lock:
        rec = store.access_tokens[token]
        if audience == "azure_devops":
            return Caller("bearer", _storage_key(world, rec.oid, org), ado_scopes(rec), org=None)
        return Caller("bearer", None, rec.scopes, roles=rec.roles, org=None)


def access_token_record(world: World, token: str) -> AccessToken | None:
    """The store's record of an issued access token (for Graph's throttling identifier and tests)."""
    with world.lock:
        return store_of(world).access_tokens.get(token)
