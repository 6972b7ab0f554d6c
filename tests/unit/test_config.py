"""Configuration loading and validation: every error names the setting and the fix."""

from __future__ import annotations

import base64
import random
import string
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from azdo_pipeline.client import ConfigurationError
from azdo_pipeline.config import OAuthAuth, PatAuth, load_config, parse_config
from azdo_pipeline.secret_shapes import looks_like_secret

GOOD = """
data_dir: ./out
organizations:
  - name: fabrikam
    url: https://dev.azure.com/fabrikam
    auth: {method: pat, pat_env: AZDO_PAT}
    sync_teams: true
  - name: contoso
    url: https://contoso.visualstudio.com
    auth:
      method: oauth
      tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 11111111-2222-3333-4444-555555555555
      client_secret_env: CONTOSO_SECRET
      token_cache: ~/.azdo-pipeline/contoso.msal.json
      authority_host: https://login.microsoftonline.us
      graph_host: https://graph.microsoft.us
    entra_group_provisioning: true
    incremental_sync: true
    concurrency: 4
"""


def test_good_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "azdo-pipeline.yaml"
    f.write_text(GOOD)
    cfg = load_config(f)
    assert cfg.data_dir == (tmp_path / "out").resolve()
    fab, con = cfg.organizations
    assert isinstance(fab.auth, PatAuth) and fab.auth.pat_env == "AZDO_PAT" and fab.sync_teams
    assert not fab.sync_organizations and not fab.incremental_sync and fab.concurrency == 8
    assert isinstance(con.auth, OAuthAuth) and con.auth.graph_host == "https://graph.microsoft.us"
    assert con.entra_group_provisioning and con.client_settings().max_concurrency == 4
    assert con.token_cache_path() == Path.home() / ".azdo-pipeline" / "contoso.msal.json"
    assert cfg.org("CONTOSO") is con
    assert cfg.check_environment({"AZDO_PAT": "x"}) == [
        "organizations[1].auth.client_secret_env: environment variable CONTOSO_SECRET is not set; export the "
        "Entra app's client secret"]


def test_no_config_anywhere_is_an_error_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZDO_PIPELINE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as exc:
        load_config(None)
    message = str(exc.value)
    assert "AZDO_PIPELINE_CONFIG" in message and "azdo-pipeline.yaml" in message and "azdo-pipeline dev" in message


def test_env_var_and_cwd_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "azdo-pipeline.yaml").write_text("organizations: [{name: cwdorg, auth: {method: pat, pat_env: P}}]")
    other = tmp_path / "other.yaml"
    other.write_text("organizations: [{name: envorg, auth: {method: pat, pat_env: P}}]")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZDO_PIPELINE_CONFIG", raising=False)
    assert load_config(None).org_names == ["cwdorg"]
    assert load_config(None).organizations[0].url == "https://dev.azure.com/cwdorg"
    monkeypatch.setenv("AZDO_PIPELINE_CONFIG", str(other))
    assert load_config(None).org_names == ["envorg"]
    monkeypatch.setenv("AZDO_PIPELINE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigurationError, match="AZDO_PIPELINE_CONFIG"):
        load_config(None)


def _error(doc: dict) -> str:
    with pytest.raises(ConfigurationError) as e:
        parse_config(doc, source="test.yaml")
    return str(e.value)


def _org(**kw) -> dict:
    return {"name": "fabrikam", "url": "https://dev.azure.com/fabrikam",
            "auth": {"method": "pat", "pat_env": "AZDO_PAT"}, **kw}


def test_entra_provisioning_with_pat_is_refused_at_load() -> None:
    msg = _error({"organizations": [_org(entra_group_provisioning=True)]})
    assert ("organizations[0].entra_group_provisioning: requires auth.method: oauth — PATs cannot change Entra "
            "group membership; switch to OAuth or turn the setting off") in msg


@pytest.mark.parametrize(("doc", "expected"), [
    ({"organizations": [_org(sync_team=True)]},
     "organizations[0].sync_team: unknown setting (did you mean 'sync_teams'?)"),
    ({"organisations": []}, "organisations: unknown setting (did you mean 'organizations'?)"),
    ({"organizations": [_org(url="http://dev.azure.com/fabrikam")]}, "organizations[0].url: must be the https"),
    ({"organizations": [_org(url="not a url")]}, "organizations[0].url: must be the https"),
    ({"organizations": [_org(), _org()]}, "organizations[1].name: duplicate organization name 'fabrikam'"),
    ({"organizations": [_org(auth={"method": "pat"})]}, "organizations[0].auth.pat_env: is required"),
    ({"organizations": [_org(auth={"method": "pat", "pat_env": "abc def-123!"})]},
     "organizations[0].auth.pat_env: must be the NAME of an environment variable"),
    ({"organizations": [_org(auth={"method": "basic"})]}, "organizations[0].auth.method: must be 'pat' or 'oauth'"),
    ({"organizations": [_org(auth={"method": "oauth", "client_id": "x"})]}, "organizations[0].auth.tenant_id"),
    ({"organizations": [_org(concurrency=0)]}, "organizations[0].concurrency: must be an integer from 1 to 64"),
    ({"organizations": [_org(sync_teams="yes")]}, "organizations[0].sync_teams: must be true or false"),
    ({"organizations": [_org(ca_bundle="/nonexistent.pem")]}, "organizations[0].ca_bundle: must be the path"),
    ({"organizations": []}, "organizations: is required"),
    ({"simulator": {"size": "huge"}, "organizations": [_org()]}, "simulator: unknown setting"),
    ({"snapshots": {"keep": 3}, "organizations": [_org()]},
     "snapshots.keep: unknown setting (did you mean 'keep_last'?)"),
    ({"snapshots": {"keep_last": 0}, "organizations": [_org()]},
     "snapshots.keep_last: must be a whole number of snapshots, 1 or more"),
    ({"snapshots": {"keep_days": "a week"}, "organizations": [_org()]},
     "snapshots.keep_days: must be a number of days above 0 (or null: no age rule), got 'a week'"),
    ({"snapshots": 7, "organizations": [_org()]}, "snapshots: must be a mapping with keep_last and/or keep_days"),
    ({"organizations": [_org(auth={"method": "oauth", "tenant_id": "contoso.onmicrosoft.com",
                                   "client_id": "11111111-2222-3333-4444-555555555555",
                                   "authority_host": "http://login.example"})]},
     "organizations[0].auth.authority_host: must be an https URL"),
    ({"organizations": [_org(entra_group_provisioning=True,
                             auth={"method": "oauth", "tenant_id": "contoso.onmicrosoft.com",
                                   "client_id": "11111111-2222-3333-4444-555555555555"})]},
     "organizations[0].auth.client_secret_env: is required when entra_group_provisioning is on"),
])
def test_validation_errors_name_setting_and_fix(doc: dict, expected: str) -> None:
    assert expected in _error(doc)


def test_snapshot_retention_reaches_the_store(tmp_path: Path) -> None:
    from azdo_pipeline.resources import AzdoPipeline
    from azdo_pipeline.store import Retention

    default = tmp_path / "default.yaml"
    default.write_text("organizations: [{name: fabrikam, auth: {method: pat, pat_env: AZDO_PAT}}]\n")
    assert AzdoPipeline(config_path=str(default)).store().retention == Retention(keep_last=30, keep_days=None)
    custom = tmp_path / "custom.yaml"
    custom.write_text("snapshots: {keep_last: null, keep_days: 90}\n"
                      "organizations: [{name: fabrikam, auth: {method: pat, pat_env: AZDO_PAT}}]\n")
    assert AzdoPipeline(config_path=str(custom)).store().retention == Retention(keep_last=None, keep_days=90)


def test_all_problems_reported_at_once() -> None:
    msg = _error({"organizations": [_org(concurrency=100, sync_teams=1, bogus=True)]})
    assert "concurrency" in msg and "sync_teams" in msg and "bogus" in msg


def test_token_cache_inside_repo_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    msg = _error({"organizations": [_org(auth={
        "method": "oauth", "tenant_id": "contoso.onmicrosoft.com", "client_id": "11111111-2222-3333-4444-555555555555",
        "token_cache": str(tmp_path / "cache.json")})]})
    assert "token_cache" in msg and "outside" in msg


def test_invalid_yaml_is_a_configuration_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("organizations: [unclosed")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_config(f)


def test_the_suite_cannot_read_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest

    # ../shared lies beside the repository on developer machines and in CI; a bare clone has none.
    monkeypatch.setattr(conftest, "_SIBLINGS", conftest._SIBLINGS | {"shared"})
    with pytest.raises(PermissionError, match="outside the repository"):
        open(conftest.REPO.parent / "shared" / "BRIEF.md")  # noqa: SIM115 - the open itself must be refused


# ---- issue 9: values a person pastes by mistake are refused at load, never echoed -------------
_RNG = random.Random(9)
_LEGACY_PAT = "".join(_RNG.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(52))
_NEW_PAT = "".join(_RNG.choice(string.ascii_letters + string.digits) for _ in range(76)) + "AZDO" + "Jq7x"
_JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiI0OTliODRhYyIsInN1YiI6IngifQ.c2lnbmF0dXJlLXBhcnQ"
_CLIENT_SECRET = "Qx8Q~" + "".join(_RNG.choice(string.ascii_letters + string.digits + "~._-") for _ in range(35))
_STORAGE_KEY = base64.b64encode(bytes(_RNG.randrange(256) for _ in range(64))).decode()
_OAUTH = {"method": "oauth", "tenant_id": "contoso.onmicrosoft.com",
          "client_id": "11111111-2222-3333-4444-555555555555"}


@pytest.mark.parametrize(("doc", "secret", "where"), [
    ({"organizations": [_org(auth={"method": "pat", "pat_env": _LEGACY_PAT})]}, _LEGACY_PAT,
     "organizations[0].auth.pat_env"),
    ({"organizations": [_org(auth={"method": "pat", "pat_env": _NEW_PAT})]}, _NEW_PAT, "organizations[0].auth.pat_env"),
    ({"organizations": [_org(auth={**_OAUTH, "client_secret_env": _CLIENT_SECRET})]}, _CLIENT_SECRET,
     "organizations[0].auth.client_secret_env"),
    ({"organizations": [_org(auth={**_OAUTH, "client_id": _JWT})]}, _JWT, "organizations[0].auth.client_id"),
    ({"organizations": [_org(url=f"http://me:{_LEGACY_PAT}@dev.azure.com/fabrikam")]}, _LEGACY_PAT,
     "organizations[0].url"),
    ({"organizations": [_org(url=f"https://dev.azure.com/fabrikam?sig={_STORAGE_KEY}")]}, _STORAGE_KEY,
     "organizations[0].url"),
    ({"data_dir": f"/srv/{_NEW_PAT}", "organizations": [_org()]}, _NEW_PAT, "data_dir"),
    ({"organizations": [{**_org(), _LEGACY_PAT: True}]}, _LEGACY_PAT, "organizations[0] (a setting name)"),
])
def test_secret_shaped_values_are_refused_without_echo(doc: dict, secret: str, where: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigurationError) as exc:
        parse_config(doc, source="test.yaml")
    message = str(exc.value)
    assert f"{where}: looks like" in message
    assert "put the secret in an environment variable and name it in pat_env" in message
    shown = "".join(traceback.format_exception(exc.value)) + repr(exc.value) + caplog.text
    assert secret not in shown and secret[:20] not in shown
    # Not even chained: Dagster's error serialisation and loggers could print a chained exception.
    assert exc.value.__cause__ is None and exc.value.__context__ is None


def test_secret_on_a_yaml_syntax_error_line_is_not_quoted(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"organizations:\n  - name: fabrikam\n    auth: {{method: pat, pat_env: {_LEGACY_PAT}\n")
    with pytest.raises(ConfigurationError) as exc:
        load_config(f)
    assert "not valid YAML: line 4, column 1" in str(exc.value)
    assert _LEGACY_PAT not in "".join(traceback.format_exception(exc.value))
    assert exc.value.__context__ is None


@pytest.mark.parametrize("value", [
    "/home/runner/work/azdo-pipeline/azdo-pipeline/data", "/srv/azdo/Data2026/Fabrikam-Prod-Europe/snapshots",
    "ThisIsMyVeryLongDirectoryNameForDataFiles2026", "thisisaverylongdirectorynameforthesnapshotsofourorgs",
    "/data/azdo/v2/2026-12-04T15:03:53Z/x1y2z3/a9b8c7d6",
])
def test_ordinary_long_values_load(value: str, tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": value, "organizations": [
        _org(name="Fabrikam-Eng-2026-Q4-Europe-West-Prod1",
             url="https://dev.azure.com/Fabrikam-Eng-2026-Q4-Europe-West-Prod1",
             auth={"method": "pat", "pat_env": "AZDO_PAT_FABRIKAM_2026_Q4_EUROPE_WEST_PROD1_READONLY"}),
        _org(name="contoso", auth={**_OAUTH, "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                                   "client_secret_env": "CONTOSO_ENTRA_APP_CLIENT_SECRET_2026"})]},
        base_dir=tmp_path)
    assert cfg.data_dir.name == Path(value).name


@pytest.mark.parametrize("make", [
    lambda r: "".join(r.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(52)),
    lambda r: "".join(r.choice(string.ascii_letters + string.digits) for _ in range(84)),
    lambda r: base64.b64encode(bytes(r.randrange(256) for _ in range(64))).decode(),
    lambda r: bytes(r.randrange(256) for _ in range(20)).hex(),
], ids=["legacy-pat", "pat-84", "base64-key", "hex-key"])
def test_secret_shapes_are_recognised(make: Callable[[random.Random], str]) -> None:
    r = random.Random(12)
    values = [make(r) for _ in range(200)]
    # PAT shapes and hex keys exactly; other random text by its statistics (an unlucky draw may look tame)
    assert sum(looks_like_secret(v) is not None for v in values) >= 190


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("organizations:\n  - name: fabrikam\n    sync_teams: true\n    auth: {method: pat, pat_env: P}\n"
                 "    sync_teams: false\n")
    with pytest.raises(ConfigurationError) as exc:
        load_config(f)
    assert "line 5, column 5: duplicate key 'sync_teams' (first on line 3); keep only one" in str(exc.value)


def test_over_long_paths_are_refused_at_load(tmp_path: Path) -> None:
    msg = _error({"data_dir": "/srv/" + "d" * 5000, "organizations": [_org(ca_bundle="/etc/" + "c" * 300)]})
    assert "data_dir: is too long (5,005 characters" in msg and "choose a shorter path" in msg
    assert "organizations[0].ca_bundle: is too long" in msg
    assert "d" * 100 not in msg and "c" * 100 not in msg
    deep = "/".join(["folder-name-of-forty-characters-exactly"] * 110)
    assert "data_dir: is too long" in _error({"data_dir": deep, "organizations": [_org()]})


def test_over_long_configuration_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="File name too long"):
        load_config(tmp_path / ("c" * 300 + ".yaml"))
