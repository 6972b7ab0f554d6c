"""Dagster resources: configuration, Azure DevOps clients and the Parquet store.

Secrets never pass through here as values: the YAML configuration names environment variables
, so run config and the UI show nothing secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from .client import AzureDevOpsClient, ConfigurationError
from .config import OrgConfig, PipelineConfig, load_config
from .store import Store
from .sync.full import SyncOptions, SyncReport, full_sync


class AzdoPipeline(dg.ConfigurableResource):
    """Organizations, credentials and where the Parquet goes.

    `config_path`: the YAML configuration (docs/configuration.md). Unset: `$AZDO_PIPELINE_CONFIG`,
    then `./azdo-pipeline.yaml`. `data_dir` overrides the file's.
    """

    config_path: str | None = Field(default=None, description="Path of the YAML configuration file.")
    data_dir: str | None = Field(default=None, description="Where the Parquet goes (overrides the config).")

    def config(self) -> PipelineConfig:
        return load_config(self.config_path)

    def store(self, cfg: PipelineConfig | None = None) -> Store:
        return Store(Path(self.data_dir or (cfg or self.config()).data_dir))

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

        client = await AzureDevOpsClient.connect(org.url, credential_for(org), settings=org.client_settings())
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


def default_resources() -> dict[str, object]:
    return {"azdo": AzdoPipeline()}
