"""Azure storage as data_dir: URL forms, where the account comes from, no secret in the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from azdo_pipeline.client.errors import ConfigurationError
from azdo_pipeline.config import parse_config
from azdo_pipeline.remote import is_remote, parse_url

ORGS = [{"name": "contoso", "url": "https://dev.azure.com/contoso", "auth": {"method": "pat", "pat_env": "X_PAT"}}]


def test_abfs_and_az_urls() -> None:
    loc = parse_url("abfss://lake@acct01.dfs.core.windows.net/azdo/prod/")
    assert (loc.account, loc.container, loc.prefix) == ("acct01", "lake", "azdo/prod")
    assert loc.path("users", "org=a") == "lake/azdo/prod/users/org=a"
    assert is_remote("az://lake/x") and not is_remote("data") and not is_remote("/tmp/az://x")


def test_az_url_names_no_account_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        parse_url("az://lake/azdo")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct02")
    assert parse_url("az://lake/azdo").account == "acct02"


def test_a_sas_token_in_the_url_is_refused_without_being_echoed() -> None:
    token = "sv=2024-01-01&sig=SeCrEtSiGnAtUrE0123456789abcdef%3D"
    with pytest.raises(ConfigurationError) as caught:
        parse_url(f"abfs://lake@acct01.dfs.core.windows.net/azdo?{token}")
    assert "AZURE_STORAGE_SAS_TOKEN" in str(caught.value) and "SeCrEt" not in str(caught.value)


def test_a_url_data_dir_gets_a_local_cache(tmp_path: Path) -> None:
    url = "abfs://lake@acct01.dfs.core.windows.net/azdo"
    cfg = parse_config({"data_dir": url, "organizations": ORGS}, source="t.yaml")
    assert cfg.data_url == url and cfg.data_dir.is_absolute() and "azdo-pipeline" in str(cfg.data_dir)
    cfg = parse_config({"data_dir": url, "cache_dir": str(tmp_path / "c"), "organizations": ORGS}, source="t.yaml")
    assert cfg.data_dir == tmp_path / "c"
    with pytest.raises(ConfigurationError, match="data_dir"):
        parse_config({"data_dir": "abfs://nope/azdo", "organizations": ORGS}, source="t.yaml")


def test_the_inbox_follows_data_dir_or_its_own_url(tmp_path: Path) -> None:
    from azdo_pipeline.provisioning.flow import provisioning_settings
    from azdo_pipeline.provisioning.inbox import RemoteInbox

    url = "abfs://lake@acct01.dfs.core.windows.net/azdo"
    cfg = parse_config({"data_dir": url, "cache_dir": str(tmp_path / "c"), "organizations": ORGS}, source="t.yaml")
    inbox = provisioning_settings(cfg).inbox()
    assert isinstance(inbox, RemoteInbox) and inbox.base == "lake/azdo/inbox"
    assert inbox.ledger_path == tmp_path / "c" / "inbox" / "ledger.sqlite3"  # the ledger stays local
    cfg = parse_config({"data_dir": str(tmp_path / "d"), "organizations": ORGS,
                        "provisioning": {"inbox_dir": "abfs://req@acct01.dfs.core.windows.net/requests"}},
                       source="t.yaml")
    inbox = provisioning_settings(cfg).inbox()
    assert isinstance(inbox, RemoteInbox) and inbox.base == "req/requests"
    assert inbox.ledger_path == tmp_path / "d" / "inbox" / "ledger.sqlite3"
    local = provisioning_settings(parse_config({"data_dir": str(tmp_path / "e"), "organizations": ORGS},
                                               source="t.yaml")).inbox()
    assert not isinstance(local, RemoteInbox) and local.root == tmp_path / "e" / "inbox"
