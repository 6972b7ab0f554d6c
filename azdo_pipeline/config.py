"""Pipeline configuration: one YAML file, validated on load (documented in docs/configuration.md).

Where it comes from: `load_config(path)`; path None -> env AZDO_PIPELINE_CONFIG ->
./azdo-pipeline.yaml. With neither, loading fails with a message naming both (and
`azdo-pipeline dev`, which serves the simulator): the pipeline never targets anything by default.

Secrets never live in the file: it holds only the NAMES of environment variables (`pat_env`,
`client_secret_env`). The settings are pydantic models (unknown keys refused, `auth` a union
discriminated by `method`); pydantic's errors are rewritten so each names the setting and the fix,
and all problems in a file are reported at once.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .client.errors import ConfigurationError
from .client.proxies import check_proxy_url
from .client.secrets import register_secret
from .client.transport import ClientSettings
from .remote import is_remote, parse_url
from .secret_shapes import looks_like_secret

ENV_CONFIG = "AZDO_PIPELINE_CONFIG"
DEFAULT_FILE = "azdo-pipeline.yaml"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_HOST = "https://graph.microsoft.com"

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ORG_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$"
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_TENANT = r"^([0-9a-fA-F-]{36}|organizations|common|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$"

EnvName = Annotated[str, Field(strict=True, pattern=_ENV_NAME)]


def _problem(message: str) -> PydanticCustomError:
    """An error whose message is shown as is (it already names the fix)."""
    return PydanticCustomError("setting", message)


# Linux's limits (PATH_MAX, NAME_MAX); the store nests snapshot folders and files below data_dir.
_PATH_MAX, _NAME_MAX, _NESTED = 4096, 255, 200


def _resolve(value: str, info: ValidationInfo) -> Path:
    """A path from the file: ~ expanded, relative to the file's folder (or the working directory).

    Over-long paths are refused here, naming the limit, rather than failing later with
    `OSError: File name too long` half-way through a run.
    """
    base_dir = (info.context or {}).get("base_dir")
    p = Path(os.path.expanduser(value))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    longest = max((len(part) for part in p.parts), default=0)
    if len(str(p)) + _NESTED > _PATH_MAX or longest > _NAME_MAX:
        raise _problem(f"is too long ({len(str(p)):,} characters, longest folder name {longest:,}); paths are limited "
                       f"to {_PATH_MAX} characters ({_PATH_MAX - _NESTED} leaving room for what the pipeline "
                       f"writes below) and folder names to {_NAME_MAX}: choose a shorter path")
    return p.resolve()


def _https(value: Any) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
        raise ValueError("not an https URL")
    return value.rstrip("/")


def _inside_git_repo(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatAuth(_Settings):
    """PAT auth: the token is read from environment variable `pat_env` at run time."""

    method: Literal["pat"] = "pat"
    pat_env: EnvName


class OAuthAuth(_Settings):
    """OAuth through an Entra app registration (a person logs in once; refresh is silent)."""

    method: Literal["oauth"] = "oauth"
    tenant_id: Annotated[str, Field(strict=True, pattern=_TENANT)]
    client_id: Annotated[str, Field(strict=True, pattern=_GUID)]
    client_secret_env: EnvName | None = None
    token_cache: Path | None = None  # None: ~/.azdo-pipeline/<org>.msal.json
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_host: str = DEFAULT_GRAPH_HOST

    @field_validator("authority_host", "graph_host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> str:
        return _https(value)

    @field_validator("token_cache", mode="before")
    @classmethod
    def _cache_outside_repo(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("not a path")
        path = _resolve(value, info)
        repo = _inside_git_repo(path.parent)
        if repo is not None:
            raise _problem(f"{path} is inside the repository {repo}; keep the token cache outside it "
                           "(default ~/.azdo-pipeline/<org>.msal.json)")
        return path


class OrganizationConfig(_Settings):
    name: Annotated[str, Field(strict=True, pattern=_ORG_NAME)]
    url: str = Field(default="", validate_default=True)  # default: https://dev.azure.com/<name>
    auth: Annotated[PatAuth | OAuthAuth, Field(discriminator="method")]
    ca_bundle: str | None = None
    # HTTP proxy for this organization's requests (Azure DevOps, Graph, msal); unset: HTTPS_PROXY.
    proxy: str | None = None
    sync_teams: StrictBool = False
    sync_organizations: StrictBool = False
    incremental_sync: StrictBool = False
    entra_group_provisioning: StrictBool = False
    concurrency: Annotated[StrictInt, Field(ge=1, le=64)] = 8
    # The longest wait the service may ask for (Retry-After, X-RateLimit-Delay); longer ends the run.
    max_wait_seconds: Annotated[StrictFloat, Field(gt=0, le=86400)] = 300.0
    # Set by the simulator's demo/dev configuration: every snapshot and materialization of this
    # organization is then marked simulated, so simulated data can never pass for real.
    simulated: StrictBool = False

    @field_validator("url", mode="before")
    @classmethod
    def _organization_url(cls, value: Any, info: ValidationInfo) -> str:
        name = info.data.get("name")
        if not value:
            if name is None:
                return ""  # the name's own error says what to fix
            value = f"https://dev.azure.com/{name}"
        name = name or "<organization>"
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise _problem(f"must be the https organization URL, e.g. https://dev.azure.com/{name} "
                           f"or https://{name}.visualstudio.com; got {_shown(value)}")
        if parts.username or parts.password or parts.query:
            raise _problem("must not contain credentials or a query string; put secrets in environment "
                           "variables named under auth")
        return str(value).rstrip("/")

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _pem_file(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _resolve(value, info).is_file():
            raise ValueError("not an existing file")
        return str(_resolve(value, info))

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy_url(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("not a proxy URL")
        try:
            return check_proxy_url(value, "proxy", allow_credentials=False)
        except ConfigurationError as exc:
            raise _problem(str(exc).removeprefix("proxy: ")) from None

    @model_validator(mode="after")
    def _provisioning_needs_oauth_app(self) -> OrganizationConfig:
        if not self.entra_group_provisioning:
            return self
        if isinstance(self.auth, PatAuth):
            raise PydanticCustomError("setting", "requires auth.method: oauth — PATs cannot change Entra group "
                                      "membership; switch to OAuth or turn the setting off",
                                      {"setting": "entra_group_provisioning"})
        if not self.auth.client_secret_env:
            raise PydanticCustomError("setting", "is required when entra_group_provisioning is on (Microsoft "
                                      "Graph needs a client-credentials token of the app)",
                                      {"setting": "auth.client_secret_env"})
        return self

    def client_settings(self, **overrides: Any) -> ClientSettings:
        return ClientSettings(max_concurrency=self.concurrency, ca_bundle=self.ca_bundle, proxy=self.proxy,
                              max_wait_seconds=float(self.max_wait_seconds), **overrides)

    def token_cache_path(self) -> Path:
        if isinstance(self.auth, OAuthAuth) and self.auth.token_cache is not None:
            return self.auth.token_cache
        return Path.home() / ".azdo-pipeline" / f"{self.name}.msal.json"


OrgConfig = OrganizationConfig  # short alias used by the Dagster resource layer


class ProvisioningSettings(_Settings):
    """`provisioning:` — the inbox and how its requests are carried out (docs/operations.md)."""

    inbox_dir: Path | None = None  # None: {data_dir}/inbox
    inbox_url: str | None = None  # inbox_dir given as an abfs:// / az:// URL (the ledger stays local)
    max_batch: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 1000
    dry_run: StrictBool = False  # every request reports the calls it would make, makes none
    confirm_wait_minutes: Annotated[float, Field(strict=True, gt=0, le=7 * 24 * 60)] = 90.0
    recheck_interval_seconds: Annotated[int, Field(strict=True, ge=10, le=86_400)] = 300

    @model_validator(mode="before")
    @classmethod
    def _remote_inbox(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("inbox_dir"), str) and is_remote(data["inbox_dir"]):
            if data.get("inbox_url"):
                raise _problem("inbox_url is set from inbox_dir; give only inbox_dir")
            parse_url(data["inbox_dir"])  # refuses a malformed URL or one carrying a secret
            data = {k: v for k, v in data.items() if k != "inbox_dir"} | {"inbox_url": data["inbox_dir"]}
        return data

    @field_validator("inbox_dir", mode="before")
    @classmethod
    def _inbox(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("not a directory path")
        return _resolve(value, info)


class SnapshotRetention(_Settings):
    """Which snapshots of an organization the store keeps (store.Retention): one kept by any rule
    stays; the published one always does. Both null: every snapshot is kept."""

    keep_last: StrictInt | None = Field(default=30, ge=1)
    keep_days: Annotated[float, Field(strict=False, gt=0)] | None = None

    @field_validator("keep_days", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
            raise ValueError("not a number")
        return value


class PipelineConfig(_Settings):
    data_dir: Path = Path("data")
    # With data_dir an abfs:// or az:// URL (azdo_pipeline/remote.py): the URL, and data_dir becomes
    # the local cache (`cache_dir`, default ~/.cache/azdo-pipeline/…) the snapshots are mirrored from.
    data_url: str | None = None
    cache_dir: Path | None = None
    snapshots: SnapshotRetention = SnapshotRetention()
    organizations: tuple[OrganizationConfig, ...]
    provisioning: ProvisioningSettings = ProvisioningSettings()
    _source: str = PrivateAttr(default="<default>")

    @property
    def source(self) -> str:
        """The file the configuration came from (or what parse_config was told)."""
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _remote_data_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("data_dir"), str) and is_remote(data["data_dir"]):
            if data.get("data_url"):
                raise _problem("data_url is set from data_dir; give only data_dir")
            loc = parse_url(data["data_dir"])
            data = {**data, "data_url": data["data_dir"], "data_dir": str(data.get("cache_dir") or loc.cache_dir())}
        return data

    @field_validator("data_dir", "cache_dir", mode="before")
    @classmethod
    def _directory(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None and info.field_name == "cache_dir":
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("not a directory path")
        return _resolve(value, info)

    @field_validator("organizations", mode="before")
    @classmethod
    def _at_least_one(cls, value: Any) -> Any:
        if value is None or value == []:
            raise _problem(_REQUIRED["organizations"])
        return value

    @field_validator("organizations")
    @classmethod
    def _unique_names(cls, orgs: tuple[OrganizationConfig, ...]) -> tuple[OrganizationConfig, ...]:
        seen: dict[str, int] = {}
        for i, org in enumerate(orgs):
            first = seen.setdefault(org.name.lower(), i)
            if first != i:
                raise PydanticCustomError(
                    "setting", f"duplicate organization name {org.name!r} (also organizations[{first}]); names "
                    "must be unique", {"setting": f"[{i}].name"})
        return orgs

    def org(self, name: str) -> OrganizationConfig:
        """The organization named `name` (case-insensitive, as Azure DevOps treats names)."""
        for o in self.organizations:
            if o.name.lower() == name.lower():
                return o
        known = ", ".join(o.name for o in self.organizations) or "none"
        raise ConfigurationError(f"organization '{name}' is not in the configuration {self.source} "
                                 f"(configured: {known}); add it under `organizations:`")

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
    # Errors are raised outside the except blocks: a chained exception (even one suppressed with
    # `from None`) is still reachable and could quote the file's text.
    problem = None
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = f"configuration file {p} does not exist"
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problem = f"cannot read the configuration file {_shown(str(p))}: {reason}; check the path (or {ENV_CONFIG})"
    if problem is None:
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            problem = f"{p}: not valid YAML: {_yaml_problem(exc)}"
    if problem is not None:
        raise ConfigurationError(problem)
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key repeated in one mapping (plain PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                line = first_line.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if line != key_node.start_mark.line:
                shown = repr(key) if isinstance(key, str) and not looks_like_secret(key) else "a key"
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown} (first on line {line + 1}); keep only one",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found and where, without the quoted source line it adds (it could hold a secret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        return f"{where}{exc.problem}{context}"
    return type(exc).__name__


def parse_config(data: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate a parsed YAML document; raises ConfigurationError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the top level must be a mapping with data_dir and organizations")
    secrets = dict(_secret_values(data))
    problems = [f"{where}: looks like {kind}, which is not shown here; never put secrets in the configuration: "
                f"{_SECRET_FIX}" for where, (_, kind) in secrets.items()]
    try:
        cfg = PipelineConfig.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        found = [value for value, _ in secrets.values()]
        for error in exc.errors():
            line = _describe(error)
            # An error at a secret's place, or quoting it, is dropped: a line above names that place.
            if line.partition(":")[0] not in secrets and not any(value in line for value in found):
                problems.append(line)
    if problems:
        lines = "\n  - ".join(problems)
        # Raised outside the except block, so pydantic's error (it holds the input values) is not chained.
        raise ConfigurationError(f"invalid configuration in {source}:\n  - {lines}")
    cfg._source = source
    return cfg


_SECRET_FIX = ("put the secret in an environment variable and name it in pat_env (client_secret_env for an "
               "OAuth app's secret)")
_PATH_SETTINGS = frozenset({"data_dir", "ca_bundle", "token_cache"})


def _secret_values(data: Any, loc: tuple[int | str, ...] = ()) -> Iterator[tuple[str, tuple[str, str]]]:
    """(where, (value, kind)) for each key or value of the document shaped like a secret."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if isinstance(key, str) and (kind := looks_like_secret(key)):
            register_secret(key)  # defence in depth: ConfigurationError redacts registered values
            yield f"{_location(list(loc)) or 'top level'} (a setting name)", (key, kind)
            continue
        where = (*loc, key)
        if isinstance(value, str):
            kind = looks_like_secret(value, path=key in _PATH_SETTINGS)
            if kind:
                register_secret(value)
                yield _location(list(where)), (value, kind)
        else:
            yield from _secret_values(value, where)


def _shown(value: object, limit: int = 60) -> str:
    """A value fit to quote in a message: long ones (a pasted secret, a runaway path) are summarised."""
    text = repr(value)
    return text if len(text) <= limit else f"<{len(text):,} characters, not shown>"


# ---- messages: pydantic's errors rewritten to name the setting and the fix ---------------------
# What a setting must be, for pydantic's own errors (missing, wrong type, pattern, range).
_MUST_BE = {
    "data_dir": "must be a directory path or an abfs:// / az:// URL (where Parquet snapshots go)",
    "snapshots": "must be a mapping with keep_last and/or keep_days",
    "keep_last": "must be a whole number of snapshots, 1 or more (or null: no count limit), got {got}",
    "keep_days": "must be a number of days above 0 (or null: no age rule), got {got}",
    "organizations": "must be a list of organizations (name, url, auth)",
    "name": "is required: the organization name (letters, digits, hyphens), got {got}",
    "auth": "must be a mapping with method: pat | oauth",
    "pat_env": "must be the NAME of an environment variable holding the personal access token "
               "(letters, digits, _), never the secret itself",
    "client_secret_env": "must be the NAME of an environment variable holding the client secret "
                         "(letters, digits, _), never the secret itself",
    "tenant_id": "is required: the Entra tenant id (a GUID) or domain, got {got}",
    "client_id": "is required: the app registration's client id (a GUID), got {got}",
    "token_cache": "must be a file path",
    "authority_host": "must be an https URL, got {got}",
    "graph_host": "must be an https URL, got {got}",
    "ca_bundle": "must be the path of an existing PEM file, got {got}",
    "proxy": "must be an HTTP proxy URL such as http://proxy.corp:8080, got {got}",
    "concurrency": "must be an integer from 1 to 64 (requests in flight), got {got}",
    "max_wait_seconds": "must be a number of seconds above 0 and at most 86400, got {got}",
    **{flag: "must be true or false, got {got}" for flag in (
        "sync_teams", "sync_organizations", "incremental_sync", "entra_group_provisioning", "simulated")},
}
# When a required setting is absent.
_REQUIRED = {
    "organizations": "is required: list at least one organization (name, url, auth)",
    "name": "is required: the organization name (letters, digits, hyphens)",
    "auth": "is required: {method: pat, pat_env: AZDO_PAT} or {method: oauth, tenant_id, client_id, "
            "client_secret_env}",
    "pat_env": "is required: name the environment variable that holds the personal access token (e.g. AZDO_PAT)",
}
_AUTH_MODELS: dict[str, type[_Settings]] = {"pat": PatAuth, "oauth": OAuthAuth}


def _describe(err: ErrorDetails) -> str:
    """One line: where (organizations[0].auth.pat_env) and what to do."""
    loc = list(err["loc"])
    # The discriminated union puts the tag in the location (auth.pat.pat_env): the file has no such level.
    if len(loc) >= 2 and loc[-2] == "auth" and loc[-1] in _AUTH_MODELS:
        loc.pop()
    loc = [part for i, part in enumerate(loc) if not (i and loc[i - 1] == "auth" and part in _AUTH_MODELS)]
    setting = next((p for p in reversed(loc) if isinstance(p, str)), "")
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("method")
        message = f"must be 'pat' or 'oauth', got {ctx.get('tag')!r}"
    elif kind == "extra_forbidden":
        message = _unknown_setting(err["loc"])
    elif kind == "setting":
        loc.extend(str(ctx["setting"]).split(".") if "setting" in ctx else [])
        message = err["msg"]
    elif kind in ("model_type", "model_attributes_type") and isinstance(loc[-1], int):
        message = "must be a mapping with name, url, auth"
    elif kind == "missing" and setting in _REQUIRED:
        message = _REQUIRED[setting]
    elif setting in _MUST_BE:
        got = "None" if kind == "missing" else _shown(err["input"])
        message = _MUST_BE[setting].format(got=got)
    else:
        message = err["msg"]
    where = _location(loc)
    return f"{where}: {message}" if where else message


def _location(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or part.startswith("["):
            out += f"[{part}]" if isinstance(part, int) else part
        else:
            out += f".{part}" if out else part
    return out


def _unknown_setting(loc: tuple[int | str, ...]) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    model: type[_Settings]
    if not parent:
        model = PipelineConfig
    elif parent == ("snapshots",):
        model = SnapshotRetention
    elif isinstance(parent[-1], str) and parent[-1] in _AUTH_MODELS:
        model = _AUTH_MODELS[parent[-1]]
    else:
        model = OrganizationConfig
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown setting ({hint})"

