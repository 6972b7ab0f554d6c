"""The one Definitions object: assets, checks, jobs, schedules, sensors, resources."""

from __future__ import annotations

import dagster as dg

import assets.graph
import assets.raw

from .jobs import full_sync_job
from .resources import default_resources
from .schedules import daily_full_sync
from .sensors import register_organizations

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets.raw, assets.graph]),
    asset_checks=dg.load_asset_checks_from_modules([assets.raw, assets.graph]),
    jobs=[full_sync_job],
    schedules=[daily_full_sync],
    sensors=[register_organizations],
    resources=default_resources(),
)
