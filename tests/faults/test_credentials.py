"""Refused credentials and failed sign-ins name the cause and the fix (issue 9), over real HTTPS
against the simulated Azure DevOps and Entra: an OAuth sign-in revoked after the last run is not
blamed on a PAT scope; a PAT without a scope names that scope; `azdo-pipeline login` without the CA
or with an unknown client id prints one clear line, no traceback. latest/ stays the previous snapshot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azdo_sim import entra
from azdo_sim.server import SimulatorServer
from azdo_sim.tokens import store_of

from azdo_pipeline import cli
from azdo_pipeline.auth import OAuthCredential, OAuthSettings, PatCredential, login
from azdo_pipeline.client import AuthenticationError
from azdo_pipeline.client.secrets import Secret
from azdo_pipeline.store import Store
from tests.integration.test_client_oauth import _browser

from .harness import AFTER, BEFORE, ORG, OUTCOMES, latest_tables, sync


def _oauth(server: SimulatorServer, app: entra.EntraApp, cache: Path) -> OAuthSettings:
    return OAuthSettings(tenant_id=server.world.tenant_id, client_id=app.client_id,
                         client_secret=Secret(app.client_secret), authority_host=server.base_url,
                         token_cache=cache, ca_bundle=server.ca_file)


def _failed_after_a_good_run(server: SimulatorServer, tmp_path: Path, good: object, bad: object,
                             revoke: object = None) -> AuthenticationError:
    store = Store(tmp_path / "data")
    sync(server, store, BEFORE, credential=good)
    before = latest_tables(store)
    if callable(revoke):
        revoke()
    with pytest.raises(AuthenticationError) as err:
        sync(server, store, AFTER, credential=bad)
    assert latest_tables(store) == before
    assert (store.latest_manifest(ORG) or {}).get("snapshot") == BEFORE
    OUTCOMES["clear failure"] += 1
    return err.value


def test_oauth_revoked_after_the_last_run_says_sign_in_again_not_pat_scope(fault_server: SimulatorServer,
                                                                           tmp_path: Path) -> None:
    app = entra.register_app(fault_server.world)
    settings = _oauth(fault_server, app, tmp_path / "cache.msal.json")
    login(settings, ORG, open_url=_browser(fault_server), say=lambda _: None, timeout=30)
    cred = OAuthCredential(settings, ORG)

    def revoke() -> None:  # e.g. the user's password was reset: sessions and refresh tokens revoked
        with fault_server.world.lock:
            assert store_of(fault_server.world).revoke(client_id=app.client_id) > 0

    msg = str(_failed_after_a_good_run(fault_server, tmp_path, cred, cred, revoke))
    assert "AADSTS50173: the sign-in was revoked" in msg
    assert f"sign in again with `azdo-pipeline login --org {ORG}`" in msg
    assert "PAT" not in msg and "scope" not in msg


def test_pat_without_a_scope_names_the_scope(fault_server: SimulatorServer, tmp_path: Path) -> None:
    world = fault_server.world
    with world.lock:
        owner = world.org(ORG).owner_key
        no_project = world.issue_pat(None, owner, {"vso.graph", "vso.identity", "vso.memberentitlementmanagement",
                                                   "vso.security_manage", "vso.profile"}).token
    msg = str(_failed_after_a_good_run(fault_server, tmp_path, None, PatCredential(no_project)))
    assert "GET projects" in msg or "GET teams" in msg
    assert "the PAT needs the 'Project and Team (Read)' scope (vso.project)" in msg


def _config(tmp_path: Path, server: SimulatorServer, client_id: str, ca: str | None) -> Path:
    lines = [f"data_dir: {tmp_path / 'data'}", "organizations:", f"  - name: {ORG}",
             f"    url: {server.org_url(ORG)}", "    auth:", "      method: oauth",
             f"      tenant_id: {server.world.tenant_id}", f"      client_id: {client_id}",
             f"      authority_host: {server.base_url}", f"      token_cache: {tmp_path / 'cache.json'}"]
    if ca:
        lines.append(f"    ca_bundle: {ca}")
    path = tmp_path / "azdo-pipeline.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _login(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str]:
    code = cli.main(["login", "--org", ORG, "--config", str(config), "--device-code"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    OUTCOMES["clear failure"] += 1
    return code, err


def test_login_without_the_ca_says_ca_bundle(fault_server: SimulatorServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    app = entra.register_app(fault_server.world)
    code, err = _login(capsys, _config(tmp_path, fault_server, app.client_id, None))
    assert code == 1
    assert err.startswith("azdo-pipeline login: cannot sign in at the Entra authority")
    assert "TLS certificate was not accepted: set the organization's ca_bundle" in err


def test_login_with_an_unknown_client_id_says_check_client_id(fault_server: SimulatorServer, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    unknown = "00000000-1111-2222-3333-444455556666"  # registered nowhere in the simulated tenant
    code, err = _login(capsys, _config(tmp_path, fault_server, unknown, fault_server.ca_file))
    assert code == 1
    assert "AADSTS700016: no application with this client id exists in the tenant: check auth.client_id" in err
