"""The Dagster code location: one Definitions object (workspace.yaml loads it from the repository).

The configuration is validated here, when the code location loads, so `dagster definitions
validate` and the UI report a configuration error before any run starts.
"""

from __future__ import annotations

import dagster as dg

from assets import graph, provisioning, raw
from azdo_pipeline.config import load_config
from azdo_pipeline.jobs import access_graph_job, full_sync_job, incremental_sync_job, provisioning_job
from azdo_pipeline.resources import default_resources
from azdo_pipeline.schedules import daily_full_sync, incremental_sync_every_15_minutes
from azdo_pipeline.sensors import (
    access_graph_after_provisioning,
    provisioning_inbox,
    provisioning_pending_check,
    register_organizations,
)

load_config()  # raises ConfigurationError naming the setting and the fix

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([raw, graph, provisioning]),
    jobs=[full_sync_job, incremental_sync_job, provisioning_job, access_graph_job],
    schedules=[daily_full_sync, incremental_sync_every_15_minutes],
    sensors=[register_organizations, provisioning_inbox, provisioning_pending_check, access_graph_after_provisioning],
    resources=default_resources(),
)
