"""Dagster resources: configuration, Azure DevOps clients and the Parquet store.

Secrets never pass through here as values: the YAML configuration names environment variables
, so run config and the UI show nothing secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg
from pydantic import Field

from .client import AzureDevOpsClient, AzureDevOpsError, ConfigurationError, MicrosoftGraphClient
from .config import OrgConfig, PipelineConfig, load_config
from .provisioning.flow import BatchResult, provision_org, provisioning_settings
from .remote import Mirror, local_root, parse_url
from .store import Retention, Store
from .sync import incremental
from .sync.full import SyncOptions, SyncReport, full_sync


def unreachable_host_message(org: OrgConfig, source: str, exc: AzureDevOpsError) -> str:
    """One sentence: the organization could not be reached (cause), and what to check (fix)."""
    text = exc.message
    causes = (("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
              ("certificate of", "its TLS certificate is not trusted"),  # client CertificateError
              ("Errno 111", "connection refused"), ("refused", "connection refused"),
              ("Errno -2", "host name not found"), ("Errno -3", "host name not found"),
              ("Name or service not known", "host name not found"), ("Errno 101", "network unreachable"),
              ("Timeout", "no answer in time"), ("ProxyError", "the proxy refused the connection"))
    cause = next((c for marker, c in causes if marker in text), text.split(" failed: ", 1)[-1])
    via = f"through the proxy {org.proxy}" if org.proxy else "directly or through HTTPS_PROXY"
    return (f"Cannot reach organization {org.name} at {org.url} ({cause}): check its `url` in {source}, that "
            f"this machine can reach that host {via} (corporate networks: set HTTPS_PROXY / NO_PROXY or the "
            "organization's `proxy`), and that `ca_bundle` holds the CA of a TLS-inspecting proxy.")


class AzdoPipeline(dg.ConfigurableResource):  # type: ignore[type-arg]  # dagster: Self-typed generic
    """Organizations, credentials and where the Parquet goes.

    `config_path`: the YAML configuration (docs/configuration.md). Unset: `$AZDO_PIPELINE_CONFIG`,
    then `./azdo-pipeline.yaml`. `data_dir` overrides the file's.
    """

    config_path: str | None = Field(default=None, description="Path of the YAML configuration file.")
    data_dir: str | None = Field(default=None, description="Where the Parquet goes (overrides the config).")

    def config(self) -> PipelineConfig:
        return load_config(self.config_path)

    def store(self, cfg: PipelineConfig | None = None) -> Store:
        """The store: a local folder, or (data_dir an abfs:// / az:// URL) a local cache mirrored to
        Azure storage (azdo_pipeline/remote.py)."""
        cfg = cfg or self.config()
        retention = Retention(cfg.snapshots.keep_last, cfg.snapshots.keep_days)
        folder, url = local_root(self.data_dir, cfg.data_dir, cfg.data_url, cfg.cache_dir)
        return Store(folder, retention=retention, mirror=Mirror(parse_url(url)) if url else None)

    def org(self, name: str, cfg: PipelineConfig | None = None) -> OrgConfig:
        try:
            return (cfg or self.config()).org(name)
        except ConfigurationError as exc:
            raise dg.Failure(f"{exc} or remove the partition") from None

    @asynccontextmanager
    async def client(self, name: str, cfg: PipelineConfig | None = None) -> AsyncIterator[AzureDevOpsClient]:
        cfg = cfg or self.config()
        org = self.org(name, cfg)
        # Missing secrets are a configuration error before any request, naming the variable to set.
        index = cfg.organizations.index(org)
        problems = [p for p in cfg.check_environment() if p.startswith(f"organizations[{index}].")]
        if problems:
            raise dg.Failure("; ".join(problems))
        from .auth import credential_for

        try:
            client = await AzureDevOpsClient.connect(org.url, credential_for(org), settings=org.client_settings())
        except AzureDevOpsError as exc:
            if exc.status != 0:  # the host answered: its own message says what is wrong
                raise
            # No answer at all (refused, no route, DNS, TLS): the run's summary says what to check.
            raise dg.Failure(description=unreachable_host_message(org, cfg.source, exc)) from None
        try:
            yield client
        finally:
            await client.aclose()

    def full_sync(self, name: str, snapshot: str) -> SyncReport:
        cfg = self.config()  # read the file once per run
        org = self.org(name, cfg)
        options = SyncOptions(sync_teams=org.sync_teams, sync_organizations=org.sync_organizations,
                              simulated=org.simulated)

        async def run() -> SyncReport:
            async with self.client(name, cfg) as client:
                return await full_sync(client, self.store(cfg), org.name, snapshot, options)

        return asyncio.run(run())

    def provision(self, name: str, *, batch_id: str, run_id: str, dry_run: bool = False) -> BatchResult:
        """Carry out one ledger batch of the organization (empty: none), re-check pending Entra
        changes, republish provisioning_outcomes (azdo_pipeline.provisioning.flow)."""
        cfg = self.config()
        org = self.org(name, cfg)
        index = cfg.organizations.index(org)
        problems = [p for p in cfg.check_environment() if p.startswith(f"organizations[{index}].")]
        if problems:
            raise dg.Failure("; ".join(problems))

        async def connect() -> AzureDevOpsClient:
            from .auth import credential_for

            return await AzureDevOpsClient.connect(org.url, credential_for(org), settings=org.client_settings())

        async def connect_msgraph() -> MicrosoftGraphClient:
            from .auth import GraphAppCredential, oauth_settings

            settings = oauth_settings(org)
            return MicrosoftGraphClient(GraphAppCredential(settings), graph_host=settings.graph_host,
                                        settings=org.client_settings())

        return asyncio.run(provision_org(
            org, self.store(cfg), provisioning_settings(cfg, data_dir=self.data_dir), connect=connect,
            connect_msgraph=connect_msgraph if org.entra_group_provisioning else None,
            batch_id=batch_id, run_id=run_id, dry_run=dry_run))

    def sync(self, name: str, snapshot: str, mode: str = "full") -> SyncReport:
        """One sync run. Organizations with `incremental_sync` on go through the incremental sync
        (sync/incremental.py): mode "incremental" runs it (falling back to a full sync, saying why),
        mode "full" runs a full sync that still keeps the audit log and its cursor. Organizations with
        the setting off always get a plain full sync."""
        if mode not in ("full", "incremental"):
            raise dg.Failure(f"unknown sync mode {mode!r}: use 'full' or 'incremental' (run tag azdo/sync_mode)")
        cfg = self.config()
        org = self.org(name, cfg)
        if not org.incremental_sync:
            return self.full_sync(name, snapshot)
        options = SyncOptions(sync_teams=org.sync_teams, sync_organizations=org.sync_organizations,
                              simulated=org.simulated)

        store = self.store(cfg)
        store.refresh(org.name)  # Azure storage: the previous snapshot may have been published elsewhere

        async def run() -> SyncReport:
            async with self.client(name, cfg) as client:
                return await incremental.sync(client, store, org.name, snapshot, options,
                                              incremental=mode == "incremental")

        return asyncio.run(run())


def default_resources() -> dict[str, object]:
    return {"azdo": AzdoPipeline()}
