"""ProxyRules: which proxy a URL goes through (setting, HTTPS_PROXY / ALL_PROXY, NO_PROXY)."""

from __future__ import annotations

import pytest

from azdo_pipeline.client.errors import ConfigurationError
from azdo_pipeline.client.proxies import ProxyRules
from azdo_pipeline.client.secrets import redact

ADO = "https://dev.azure.com/fabrikam/_apis/projects"


def test_no_proxy_configured_means_direct() -> None:
    rules = ProxyRules.resolve(None, {})
    assert not rules.active
    assert rules.proxy_for(ADO) is None


def test_https_proxy_and_lower_case_precedence() -> None:
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}
    assert ProxyRules.resolve(None, env).proxy_for(ADO) == "http://lower:3128"
    assert ProxyRules.resolve(None, {"HTTPS_PROXY": "proxy.corp:8080"}).proxy_for(ADO) == "http://proxy.corp:8080"


def test_all_proxy_is_the_fallback_and_http_proxy_only_for_http_urls() -> None:
    assert ProxyRules.resolve(None, {"ALL_PROXY": "http://all:1"}).proxy_for(ADO) == "http://all:1"
    rules = ProxyRules.resolve(None, {"HTTP_PROXY": "http://plain:1"})
    assert rules.proxy_for(ADO) is None
    assert rules.proxy_for("http://127.0.0.1:8080/x") == "http://plain:1"


def test_the_organization_setting_wins_over_the_environment() -> None:
    rules = ProxyRules.resolve("http://org-proxy:8080", {"HTTPS_PROXY": "http://env:1"})
    assert rules.proxy_for(ADO) == "http://org-proxy:8080"


@pytest.mark.parametrize(("no_proxy", "url", "direct"), [
    ("dev.azure.com", ADO, True),
    ("azure.com", ADO, True),  # a domain covers its subdomains
    (".azure.com", "https://vssps.dev.azure.com/fabrikam", True),
    ("*.azure.com", "https://vssps.dev.azure.com/fabrikam", True),
    ("zure.com", ADO, False),  # not a suffix match on a label boundary
    ("dev.azure.com:8443", ADO, False),  # the port must match
    ("dev.azure.com:443", ADO, True),
    ("10.0.0.0/8", "https://10.1.2.3/x", True),
    ("10.0.0.0/8", "https://11.1.2.3/x", False),
    ("127.0.0.1", "https://127.0.0.1:8443/x", True),
    ("[::1]", "https://[::1]:8443/x", True),
    ("::1", "https://[::1]:8443/x", True),
    ("example.com, login.microsoftonline.com", "https://login.microsoftonline.com/t", True),
    ("*", ADO, True),
    ("", ADO, False),
])
def test_no_proxy(no_proxy: str, url: str, direct: bool) -> None:
    rules = ProxyRules.resolve("http://p:1", {"NO_PROXY": no_proxy})
    assert (rules.proxy_for(url) is None) is direct


def test_socks_and_bad_urls_are_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="ALL_PROXY: SOCKS proxies are not supported"):
        ProxyRules.resolve(None, {"ALL_PROXY": "socks5://p:1080"})
    with pytest.raises(ConfigurationError, match=r"https_proxy: not a proxy URL; expected http://host:port"):
        ProxyRules.resolve(None, {"https_proxy": "http://p:notaport"})
    with pytest.raises(ConfigurationError, match="proxy: not a proxy URL"):
        ProxyRules.resolve("ftp://p:21", {})


def test_credentials_only_from_the_environment_and_never_printed() -> None:
    with pytest.raises(ConfigurationError, match=r"must not contain credentials.*HTTPS_PROXY"):
        ProxyRules.resolve("http://user:secret@p:1", {})
    rules = ProxyRules.resolve(None, {"HTTPS_PROXY": "http://user:s3cr3t-proxy-pw@p:1"})
    assert rules.proxy_for(ADO) == "http://user:s3cr3t-proxy-pw@p:1"
    assert "s3cr3t-proxy-pw" not in redact(f"failed through {rules.proxy_for(ADO)}")


def test_organization_proxy_setting_reaches_every_client() -> None:
    from azdo_pipeline.auth import oauth_settings
    from azdo_pipeline.config import parse_config

    cfg = parse_config({"organizations": [{
        "name": "fabrikam", "proxy": "proxy.corp:3128",
        "auth": {"method": "oauth", "tenant_id": "contoso.onmicrosoft.com",
                 "client_id": "00000000-0000-0000-0000-000000000001"}}]})
    org = cfg.organizations[0]
    assert org.client_settings().proxy == "http://proxy.corp:3128"  # Azure DevOps and Graph clients
    assert oauth_settings(org, {}).proxy == "http://proxy.corp:3128"  # msal


@pytest.mark.parametrize(("value", "message"), [
    ("http://user:hunter2hunter2@proxy.corp:8080", "must not contain credentials"),
    ("socks5://proxy.corp:1080", "SOCKS proxies are not supported"),
    (8080, "must be an HTTP proxy URL such as http://proxy.corp:8080"),
])
def test_organization_proxy_setting_is_checked_on_load(value: object, message: str) -> None:
    from azdo_pipeline.config import parse_config

    with pytest.raises(ConfigurationError, match=rf"organizations\[0\]\.proxy: {message}") as info:
        parse_config({"organizations": [{"name": "x", "proxy": value, "auth": {"method": "pat", "pat_env": "A"}}]})
    assert "hunter2" not in str(info.value)
