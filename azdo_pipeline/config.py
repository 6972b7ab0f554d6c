"""Pipeline configuration: one YAML file, validated on load (documented in docs/configuration.md).

Where it comes from: `load_config(path)`; path None -> env AZDO_PIPELINE_CONFIG ->
./azdo-pipeline.yaml. With neither, loading fails with a message naming both (and
`azdo-pipeline dev`, which serves the simulator): the pipeline never targets anything by default.

Secrets never live in the file: it holds only the NAMES of environment variables (`pat_env`,
`client_secret_env`). Every error names the setting and the fix; all problems in a file are
reported at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .client.errors import ConfigurationError
from .client.transport import ClientSettings

ENV_CONFIG = "AZDO_PIPELINE_CONFIG"
DEFAULT_FILE = "azdo-pipeline.yaml"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_HOST = "https://graph.microsoft.com"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORG_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^([0-9a-fA-F-]{36}|organizations|common|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


@dataclass(frozen=True)
class PatAuth:
    """PAT auth: the token is read from environment variable `pat_env` at run time."""

    pat_env: str = "AZDO_PAT"
    method: str = "pat"


@dataclass(frozen=True)
class OAuthAuth:
    """OAuth through an Entra app registration (a person logs in once; refresh is silent)."""

    tenant_id: str
    client_id: str
    client_secret_env: str | None = None
    token_cache: Path | None = None  # None: ~/.azdo-pipeline/<org>.msal.json
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_host: str = DEFAULT_GRAPH_HOST
    method: str = "oauth"


@dataclass(frozen=True)
class OrganizationConfig:
    name: str
    url: str
    auth: PatAuth | OAuthAuth = field(default_factory=PatAuth)
    ca_bundle: str | None = None
    sync_teams: bool = False
    sync_organizations: bool = False
    incremental_sync: bool = False
    entra_group_provisioning: bool = False
    concurrency: int = 8
    # Set by the simulator's demo/dev configuration: every snapshot and materialization of this
    # organization is then marked simulated, so simulated data can never pass for real.
    simulated: bool = False

    def client_settings(self, **overrides: Any) -> ClientSettings:
        return ClientSettings(max_concurrency=self.concurrency, ca_bundle=self.ca_bundle, **overrides)

    def token_cache_path(self) -> Path:
        if isinstance(self.auth, OAuthAuth) and self.auth.token_cache is not None:
            return self.auth.token_cache
        return Path.home() / ".azdo-pipeline" / f"{self.name}.msal.json"


OrgConfig = OrganizationConfig  # short alias used by the Dagster resource layer


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path
    organizations: tuple[OrganizationConfig, ...]
    source: str = "<default>"  # the file it came from, or "<default>"

    def org(self, name: str) -> OrganizationConfig:
        for o in self.organizations:
            if o.name.lower() == name.lower():
                return o
        raise ConfigurationError(f"no organization named {name!r} in {self.source}; known: "
                                 + ", ".join(o.name for o in self.organizations))

    @property
    def org_names(self) -> list[str]:
        return [o.name for o in self.organizations]

    def check_environment(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Problems with the environment the file refers to (unset secret variables), as messages.

        Not part of load_config: Dagster loads definitions where secrets may be absent; call this
        before a run starts.
        """
        env = os.environ if environ is None else environ
        problems = []
        for i, o in enumerate(self.organizations):
            if isinstance(o.auth, PatAuth):
                if not env.get(o.auth.pat_env):
                    problems.append(f"organizations[{i}].auth.pat_env: environment variable {o.auth.pat_env} "
                                    f"is not set; export the PAT for {o.name} in it")
            elif o.auth.client_secret_env and not env.get(o.auth.client_secret_env):
                problems.append(f"organizations[{i}].auth.client_secret_env: environment variable "
                                f"{o.auth.client_secret_env} is not set; export the Entra app's client secret")
        return problems


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Load and validate the configuration (see the module docstring for where it is looked up)."""
    if path is None:
        env_path = os.environ.get(ENV_CONFIG)
        if env_path:
            path = env_path
            if not Path(path).exists():
                raise ConfigurationError(f"{ENV_CONFIG} points at {path}, which does not exist; fix the path "
                                         f"or unset {ENV_CONFIG}")
        elif Path(DEFAULT_FILE).exists():
            path = DEFAULT_FILE
        else:
            raise ConfigurationError(
                f"no configuration: set {ENV_CONFIG} to your configuration file or create ./{DEFAULT_FILE} "
                "(docs/configuration.md); to try the pipeline against the bundled simulator instead, run "
                "`azdo-pipeline dev` from the repository")
    p = Path(path)
    if not p.exists():
        raise ConfigurationError(f"configuration file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)


# ---- validation ---------------------------------------------------------------------------
_TOP = ("data_dir", "organizations")
_ORG = ("name", "url", "auth", "ca_bundle", "sync_teams", "sync_organizations", "incremental_sync",
        "entra_group_provisioning", "concurrency", "simulated")
_PAT = ("method", "pat_env")
_OAUTH = ("method", "tenant_id", "client_id", "client_secret_env", "token_cache", "authority_host", "graph_host")


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)

    def unknown_keys(self, where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        for k in data:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                self.add(f"{where}.{k}" if where else str(k), f"unknown setting ({hint})")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  - ".join(self.items)
            raise ConfigurationError(f"invalid configuration in {self.source}:\n  - {lines}")


def _bool(errs: _Errors, where: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        errs.add(where, f"must be true or false, got {value!r}")
        return default
    return value


def _env_name(errs: _Errors, where: str, value: Any, what: str, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            errs.add(where, f"is required: name the environment variable that holds {what} (e.g. AZDO_PAT)")
        return None
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        errs.add(where, f"must be the NAME of an environment variable holding {what} (letters, digits, _), "
                        "never the secret itself")
        return None
    return value


def _https(errs: _Errors, where: str, value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
        errs.add(where, f"must be an https URL, got {value!r}")
        return default
    return value.rstrip("/")


def _inside_git_repo(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def _path(base_dir: Path | None, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p.resolve()


def parse_config(data: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate a parsed YAML document; raises ConfigurationError listing every problem."""
    errs = _Errors(source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the top level must be a mapping with data_dir and "
                                 "organizations")
    errs.unknown_keys("", data, _TOP)

    data_dir_raw = data.get("data_dir", "data")
    if not isinstance(data_dir_raw, str) or not data_dir_raw.strip():
        errs.add("data_dir", "must be a directory path (where Parquet snapshots go)")
        data_dir_raw = "data"
    data_dir = _path(base_dir or Path.cwd(), data_dir_raw)

    orgs_raw = data.get("organizations")
    orgs: list[OrganizationConfig] = []
    if orgs_raw is None or (isinstance(orgs_raw, list) and not orgs_raw):
        errs.add("organizations", "is required: list at least one organization (name, url, auth)")
    elif not isinstance(orgs_raw, list):
        errs.add("organizations", "must be a list of organizations")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(orgs_raw):
            org = _parse_org(errs, f"organizations[{i}]", raw, base_dir)
            if org is None:
                continue
            key = org.name.lower()
            if key in seen:
                errs.add(f"organizations[{i}].name", f"duplicate organization name {org.name!r} (also "
                                                     f"organizations[{seen[key]}]); names must be unique")
            seen.setdefault(key, i)
            orgs.append(org)
    errs.raise_if_any()
    return PipelineConfig(data_dir=data_dir, organizations=tuple(orgs), source=source)


def _parse_org(errs: _Errors, where: str, raw: Any, base_dir: Path | None) -> OrganizationConfig | None:
    if not isinstance(raw, dict):
        errs.add(where, "must be a mapping with name, url, auth")
        return None
    errs.unknown_keys(where, raw, _ORG)
    name = raw.get("name")
    if not isinstance(name, str) or not _ORG_NAME.match(name):
        errs.add(f"{where}.name", "is required: the organization name (letters, digits, hyphens), "
                                  f"got {name!r}")
        name = f"org{where}"
    url = raw.get("url") or f"https://dev.azure.com/{name}"
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        errs.add(f"{where}.url", f"must be the https organization URL, e.g. https://dev.azure.com/{name} "
                                 f"or https://{name}.visualstudio.com; got {url!r}")
    elif parts.username or parts.password or parts.query:
        errs.add(f"{where}.url", "must not contain credentials or a query string; put secrets in "
                                 "environment variables named under auth")
    auth = _parse_auth(errs, f"{where}.auth", raw.get("auth"), base_dir)
    ca_bundle = raw.get("ca_bundle")
    if ca_bundle is not None:
        if not isinstance(ca_bundle, str) or not _path(base_dir, ca_bundle).is_file():
            errs.add(f"{where}.ca_bundle", f"must be the path of an existing PEM file, got {ca_bundle!r}")
            ca_bundle = None
        else:
            ca_bundle = str(_path(base_dir, ca_bundle))
    concurrency = raw.get("concurrency", 8)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 64:
        errs.add(f"{where}.concurrency", f"must be an integer from 1 to 64 (requests in flight), got {concurrency!r}")
        concurrency = 8
    entra = _bool(errs, f"{where}.entra_group_provisioning", raw.get("entra_group_provisioning"), False)
    if entra and isinstance(auth, PatAuth):
        errs.add(f"{where}.entra_group_provisioning",
                 "requires auth.method: oauth — PATs cannot change Entra group membership; switch to OAuth "
                 "or turn the setting off")
    if entra and isinstance(auth, OAuthAuth) and not auth.client_secret_env:
        errs.add(f"{where}.auth.client_secret_env",
                 "is required when entra_group_provisioning is on (Microsoft Graph needs a client-credentials "
                 "token of the app)")
    return OrganizationConfig(
        name=name, url=str(url).rstrip("/"), auth=auth or PatAuth(), ca_bundle=ca_bundle,
        sync_teams=_bool(errs, f"{where}.sync_teams", raw.get("sync_teams"), False),
        sync_organizations=_bool(errs, f"{where}.sync_organizations", raw.get("sync_organizations"), False),
        incremental_sync=_bool(errs, f"{where}.incremental_sync", raw.get("incremental_sync"), False),
        entra_group_provisioning=entra, concurrency=concurrency,
        simulated=_bool(errs, f"{where}.simulated", raw.get("simulated"), False))


def _parse_auth(errs: _Errors, where: str, raw: Any, base_dir: Path | None) -> PatAuth | OAuthAuth | None:
    if raw is None:
        errs.add(where, "is required: {method: pat, pat_env: AZDO_PAT} or {method: oauth, tenant_id, "
                        "client_id, client_secret_env}")
        return None
    if not isinstance(raw, dict):
        errs.add(where, "must be a mapping with method: pat | oauth")
        return None
    method = raw.get("method")
    if method == "pat":
        errs.unknown_keys(where, raw, _PAT)
        env = _env_name(errs, f"{where}.pat_env", raw.get("pat_env"), "the personal access token", True)
        return PatAuth(pat_env=env or "AZDO_PAT")
    if method == "oauth":
        errs.unknown_keys(where, raw, _OAUTH)
        tenant = raw.get("tenant_id")
        if not isinstance(tenant, str) or not _TENANT.match(tenant):
            errs.add(f"{where}.tenant_id", "is required: the Entra tenant id (a GUID) or domain, "
                                           f"got {tenant!r}")
            tenant = ""
        client = raw.get("client_id")
        if not isinstance(client, str) or not _GUID.match(client):
            errs.add(f"{where}.client_id", f"is required: the app registration's client id (a GUID), got {client!r}")
            client = ""
        secret_env = _env_name(errs, f"{where}.client_secret_env", raw.get("client_secret_env"),
                               "the client secret", False)
        cache = raw.get("token_cache")
        cache_path: Path | None = None
        if cache is not None:
            if not isinstance(cache, str) or not cache.strip():
                errs.add(f"{where}.token_cache", "must be a file path")
            else:
                cache_path = _path(base_dir, cache)
                repo = _inside_git_repo(cache_path.parent)
                if repo is not None:
                    errs.add(f"{where}.token_cache",
                             f"{cache_path} is inside the repository {repo}; keep the token cache outside "
                             "it (default ~/.azdo-pipeline/<org>.msal.json)")
        return OAuthAuth(
            tenant_id=tenant, client_id=client, client_secret_env=secret_env, token_cache=cache_path,
            authority_host=_https(errs, f"{where}.authority_host", raw.get("authority_host"), DEFAULT_AUTHORITY_HOST),
            graph_host=_https(errs, f"{where}.graph_host", raw.get("graph_host"), DEFAULT_GRAPH_HOST))
    errs.add(f"{where}.method", f"must be 'pat' or 'oauth', got {method!r}")
    return None
