"""Access graph: pure functions from one organization's raw tables to Baton-model tables.

    from azdo_pipeline.accessgraph import build_access_graph
    tables = build_access_graph(raw, organization="fabrikam")   # dict name -> pa.Table

See build.py for the per-table functions and the streaming writer, schemas.py for the documented
schemas, checks.py for the asset-check helpers.
"""

from .build import (
    access_by_principal_table,
    build_access_graph,
    compile_graph,
    effective_grants_table,
    entitlements_table,
    find_cycles,
    grants_table,
    membership_cycles_table,
    principals_by_project_table,
    resource_types_table,
    resources_table,
    write_access_graph,
)
from .index import GraphIndex
from .schemas import DERIVED_TABLES

__all__ = [
    "DERIVED_TABLES",
    "GraphIndex",
    "access_by_principal_table",
    "build_access_graph",
    "compile_graph",
    "effective_grants_table",
    "entitlements_table",
    "find_cycles",
    "grants_table",
    "membership_cycles_table",
    "principals_by_project_table",
    "resource_types_table",
    "resources_table",
    "write_access_graph",
]
