"""Jobs."""

import dagster as dg

full_sync_job = dg.define_asset_job(
    "full_sync_job",
    selection=dg.AssetSelection.groups("azdo_raw", "access_graph"),
    description="Full sync of one organization (raw tables), then the access graph built from that snapshot.",
    tags={"azdo/sync_mode": "full"},
)

provisioning_job = dg.define_asset_job(
    "provisioning_job",
    selection=dg.AssetSelection.assets("provisioning_outcomes"),
    description="Carries out one batch of inbox requests for one organization (the provisioning_inbox sensor "
                "launches it) and republishes the provisioning_outcomes table.",
    tags={"azdo/kind": "provisioning"},
)

access_graph_job = dg.define_asset_job(
    "access_graph_job",
    selection=dg.AssetSelection.groups("access_graph"),
    description="Rebuilds the access graph of one organization from its latest raw snapshot (after provisioning "
                "re-read the memberships it changed).",
)

incremental_sync_job = dg.define_asset_job(
    "incremental_sync_job",
    selection=dg.AssetSelection.groups("azdo_raw", "access_graph"),
    description="Incremental sync of one organization from its audit log (a full sync when the organization's "
                "incremental_sync setting is off, or when the incremental one cannot be proven equal), then the "
                "access graph.",
    tags={"azdo/sync_mode": "incremental"},
)
