"""auth.py without a network: PAT, msal wiring (fake msal classes), token cache file, secrets hidden."""

from __future__ import annotations

import asyncio
import pickle
import stat
from pathlib import Path
from typing import Any

import msal
import pytest

from azdo_pipeline import auth
from azdo_pipeline.auth import (
    AZURE_DEVOPS_SCOPE,
    OAuthCredential,
    OAuthSettings,
    PatCredential,
    TokenCacheFile,
    build_msal_app,
    credential_from_config,
)
from azdo_pipeline.client import AuthenticationError, ConfigurationError, Secret, redact
from azdo_pipeline.config import parse_config

SECRET = "Abc8Q~client-secret-value-0123456789xyz"


def _settings(tmp_path: Path, **kw: Any) -> OAuthSettings:
    base = {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": Secret(SECRET), "token_cache": tmp_path / "c.json"}
    return OAuthSettings(**{**base, **kw})


class _Capture:
    def __init__(self, client_id: str, **kwargs: Any) -> None:
        self.client_id, self.kwargs = client_id, kwargs


def test_msal_app_wiring_for_sovereign_and_custom_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(msal, "ConfidentialClientApplication", _Capture)
    monkeypatch.setattr(msal, "PublicClientApplication", _Capture)
    gov = build_msal_app(_settings(tmp_path, authority_host="https://login.microsoftonline.us"))
    assert gov.kwargs["authority"] == "https://login.microsoftonline.us/72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert "instance_discovery" not in gov.kwargs  # a well-known host
    assert gov.kwargs["azure_region"] is False and gov.kwargs["client_credential"] == SECRET
    assert gov.kwargs["http_client"].trust_env is True  # no CA bundle: environment as usual
    local = build_msal_app(_settings(tmp_path, authority_host="https://127.0.0.1:8443", ca_bundle="/x/ca.pem"))
    assert local.kwargs["instance_discovery"] is False
    session = local.kwargs["http_client"]
    assert session.verify == "/x/ca.pem" and session.trust_env is False  # REQUESTS_CA_BUNDLE cannot win
    public = build_msal_app(_settings(tmp_path, client_secret=None))
    assert "client_credential" not in public.kwargs


def test_http_authority_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="https"):
        _settings(tmp_path, authority_host="http://127.0.0.1:8443")


def test_pat_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="AZDO_PAT_X"):
        PatCredential.from_env("AZDO_PAT_X", {})
    cred = PatCredential.from_env("AZDO_PAT_X", {"AZDO_PAT_X": "patvalue-1234567890"})
    assert "patvalue" not in repr(cred)
    assert redact("error mentioning patvalue-1234567890") == "error mentioning ***"


def test_secret_hides_itself_and_refuses_pickle() -> None:
    s = Secret("very-secret-value-123")
    assert "very-secret" not in f"{s} {s!r} {s:>10}"
    with pytest.raises(TypeError):
        pickle.dumps(s)
    settings = OAuthSettings(tenant_id="t.onmicrosoft.com", client_id="c", client_secret=s)
    assert "very-secret" not in repr(settings)


def test_token_cache_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".azdo-pipeline" / "fabrikam.msal.json"
    f = TokenCacheFile(path)
    f.cache.has_state_changed = True
    f.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    TokenCacheFile(path)  # loading a too-open cache tightens it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


class FakeApp:
    """Stands in for a msal app: one account; silent calls hand out numbered tokens."""

    def __init__(self, cache: Any, accounts: bool = True) -> None:
        self.cache, self.accounts, self.calls = cache, accounts, []

    def get_accounts(self) -> list[dict]:
        return [{"home_account_id": "u.t"}] if self.accounts else []

    def acquire_token_silent(self, scopes: list[str], account: dict, force_refresh: bool = False) -> dict:
        self.calls.append((tuple(scopes), force_refresh))
        self.cache.has_state_changed = True  # as msal does when it redeemed the refresh token
        return {"access_token": f"access-token-number-{len(self.calls)}-xxxxxxxx", "expires_in": 3600}


def test_oauth_credential_silent_then_forced_refresh(tmp_path: Path) -> None:
    apps: list[FakeApp] = []

    def factory(settings: OAuthSettings, *, cache: Any, public: bool) -> FakeApp:
        apps.append(FakeApp(cache))
        return apps[-1]

    cred = OAuthCredential(_settings(tmp_path), "fabrikam", app_factory=factory)

    async def go() -> list[str]:
        h1 = await cred.auth_header()
        h2 = await cred.auth_header()  # served from memory: no second msal call
        refreshed = await cred.on_unauthorized()
        assert refreshed
        return [h1, h2, await cred.auth_header()]

    h1, h2, h3 = asyncio.run(go())
    assert h1 == h2 == "Bearer access-token-number-1-xxxxxxxx" and h3.endswith("-2-xxxxxxxx")
    assert apps[0].calls == [((AZURE_DEVOPS_SCOPE,), False), ((AZURE_DEVOPS_SCOPE,), True)]
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600  # written back after refresh
    assert "access-token-number" not in repr(cred) and SECRET not in repr(cred)
    assert redact(h3) == "Bearer ***"


def test_oauth_without_login_names_the_login_command(tmp_path: Path) -> None:
    cred = OAuthCredential(_settings(tmp_path), "fabrikam",
                           app_factory=lambda s, *, cache, public: FakeApp(cache, accounts=False))
    with pytest.raises(AuthenticationError, match="azdo-pipeline login --org fabrikam"):
        asyncio.run(cred.auth_header())


def test_credential_from_config(tmp_path: Path) -> None:
    cfg = parse_config({"organizations": [
        {"name": "a", "auth": {"method": "pat", "pat_env": "A_PAT"}},
        {"name": "b", "auth": {"method": "oauth", "tenant_id": "contoso.onmicrosoft.com",
                               "client_id": "11111111-2222-3333-4444-555555555555",
                               "client_secret_env": "B_SECRET", "token_cache": str(tmp_path / "b.json")}}]})
    env = {"A_PAT": "pat-value-abcdefgh", "B_SECRET": SECRET}
    assert isinstance(credential_from_config(cfg.organizations[0], env), PatCredential)
    oauth = credential_from_config(cfg.organizations[1], env)
    assert isinstance(oauth, OAuthCredential)
    assert oauth.cache_file.path == tmp_path / "b.json"
    assert SECRET not in repr(oauth)
    with pytest.raises(ConfigurationError, match="B_SECRET"):
        credential_from_config(cfg.organizations[1], {})


def test_default_token_cache_is_outside_the_repo() -> None:
    p = auth.default_token_cache("fabrikam")
    assert p == Path.home() / ".azdo-pipeline" / "fabrikam.msal.json"


def test_login_from_config_refuses_pat_orgs(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("organizations: [{name: fabrikam, auth: {method: pat, pat_env: AZDO_PAT}}]")
    with pytest.raises(ConfigurationError, match="nothing to log in"):
        auth.login_from_config("fabrikam", config_path=f)
