"""Arrow schemas of the derived access-graph tables (Baton's resource / entitlement / grant model).

Same conventions as `azdo_pipeline.schemas`: every column carries a description in its field
metadata and every schema names its key columns, so docs/tables.md is generated from here.

Identifier columns of the large tables (grants, effective grants, views) are dictionary-encoded
strings: each distinct descriptor is stored once, which keeps a million-membership organization
small in memory and on disk. DuckDB, Spark and Polars read them as plain strings; pandas reads
them as `category` columns.
"""

from __future__ import annotations

import pyarrow as pa

from azdo_pipeline.schemas import TS, col, table_schema

# Dictionary-encoded string (int32 indices): the type of every identifier column in the big tables.
DSTR = pa.dictionary(pa.int32(), pa.string())
DSTR8 = pa.dictionary(pa.int8(), pa.string())  # for columns with a handful of distinct values
PATH = pa.list_(pa.field("item", DSTR))
NAMES = pa.list_(pa.field("item", pa.string()))

# Values of `via` (effective_grants and the views).
VIA_DIRECT = "direct"
VIA_ADO_GROUP = "azure_devops_group"
VIA_ENTRA_GROUP = "entra_group"
VIA_VALUES = (VIA_DIRECT, VIA_ADO_GROUP, VIA_ENTRA_GROUP)

_VIA_DOC = ("How the principal holds it: `direct` (no group in between), `azure_devops_group` (through nested "
            "Azure DevOps groups only) or `entra_group` (the chain passes through at least one Entra group).")
_PATH_DOC = ("Shortest chain of groups (descriptors) between the principal and the grant, from the group the "
             "principal is a direct member of outwards; empty when direct. Ties are broken deterministically.")

RESOURCE_TYPES = table_schema(
    "The kinds of resources in the access graph, with their Baton traits.",
    ["resource_type"],
    col("resource_type", pa.string(), "Resource type id: user, service_account, service_principal, group, team, "
        "project or organization.", nullable=False),
    col("display_name", pa.string(), "Human-readable name."),
    col("description", pa.string(), "What the type covers and where it comes from."),
    col("traits", NAMES, "Baton traits: `user` (accounts), `group` (groups and teams), `app` (service "
        "principals: Entra applications); empty for projects and the organization.", nullable=False),
    col("account_type", pa.string(), "For the `user` trait: `human` or `service`; null otherwise."),
    col("is_principal", pa.bool_(), "True when resources of this type can receive grants.", nullable=False),
    col("source_table", pa.string(), "Raw table the resources are read from."),
)

RESOURCES = table_schema(
    "One row per synced object of the organization, with its parent and the profile fields access reviews "
    "need. Team-backing groups appear both as a `group` (nested memberships address them by descriptor) and "
    "as a `team`.",
    ["resource_type", "resource_id"],
    col("resource_type", pa.string(), "Resource type (see resource_types).", nullable=False),
    col("resource_id", pa.string(), "Stable id: subject descriptor for users, service accounts, service "
        "principals and groups; team id; project id; organization name.", nullable=False),
    col("display_name", pa.string(), "Display name (team, project and organization: their name)."),
    col("description", pa.string(), "Description (groups, teams, projects)."),
    col("parent_resource_type", pa.string(), "`project` for project-scoped groups and for teams, else "
        "`organization`; null for the organization itself."),
    col("parent_resource_id", pa.string(), "Id of the parent resource."),
    col("project_id", pa.string(), "Project the resource belongs to (project groups, teams, the project "
        "itself); null for organization-wide resources."),
    col("storage_key", pa.string(), "Identity id (GUID) of users and Azure DevOps groups."),
    col("principal_name", pa.string(), "Sign-in name (users), qualified group name, application id (service "
        "principals) or service identity name."),
    col("email", pa.string(), "E-mail address (users)."),
    col("user_type", pa.string(), "`member` or `guest` (users, from the Entra user type)."),
    col("status", pa.string(), "Users: entitlement status (active, pending, disabled, deleted, …); projects: "
        "state; organization: account status."),
    col("license", pa.string(), "Users: accountLicenseType (express = Basic, stakeholder, advanced, "
        "professional, earlyAdopter, none)."),
    col("license_level", pa.string(), "Users: the organization licence entitlement they hold (slug, e.g. "
        "`basic`, `visual_studio_subscriber`); null without a licence."),
    col("license_display_name", pa.string(), "Users: licence as the Azure DevOps UI shows it."),
    col("licensing_source", pa.string(), "Users: none, account, msdn, profile, auto, trial."),
    col("last_accessed", TS, "Users: last access to the organization; null when never signed in."),
    col("date_created", TS, "Users: when they were added to the organization."),
    col("origin", pa.string(), "Source directory: `aad` (Entra), `msa` (Microsoft account) or `vsts` (Azure "
        "DevOps)."),
    col("entra_object_id", pa.string(), "Entra object id, for Entra-sourced users, service principals and "
        "Entra groups; null otherwise."),
    col("application_id", pa.string(), "Service principals: Entra application (client) id."),
    col("group_kind", pa.string(), "Groups: `vssgp` (Azure DevOps group) or `aadgp` (Entra group)."),
    col("scope", pa.string(), "Groups: `project` or `organization`."),
    col("is_team", pa.bool_(), "Groups: true when the group backs a team."),
    col("project_role", pa.string(), "Built-in project groups: the role slug (project_administrators, "
        "contributors, readers, build_administrators, project_valid_users); null otherwise."),
    col("team_group_id", pa.string(), "Teams: descriptor of the group that backs the team (its members are "
        "the team's members)."),
    col("visibility", pa.string(), "Projects: private or public."),
    col("url", pa.string(), "Organization URL."),
)

ENTITLEMENTS = table_schema(
    "What can be granted on each resource: `member` of every group and team, `admin` of teams, one licence "
    "level per organization licence, and on projects the roles of the built-in groups plus `member`.",
    ["entitlement_id"],
    col("entitlement_id", pa.string(), "`{resource_type}:{resource_id}:{entitlement}`.", nullable=False),
    col("resource_type", pa.string(), "Type of the resource the entitlement is on.", nullable=False),
    col("resource_id", pa.string(), "Id of the resource the entitlement is on.", nullable=False),
    col("entitlement", pa.string(), "Slug: `member`, `admin`, a project role (project_administrators, "
        "contributors, readers, build_administrators, project_valid_users) or a licence level (basic, "
        "basic_test_plans, stakeholder, visual_studio_subscriber, visual_studio_professional, early_adopter).",
        nullable=False),
    col("display_name", pa.string(), "Human-readable name."),
    col("description", pa.string(), "What holding it means and how it is granted."),
    col("purpose", pa.string(), "Baton purpose: `assignment` (membership, licence) or `permission` (roles, "
        "team admin).", nullable=False),
    col("grantable_to", NAMES, "Resource types that can hold it.", nullable=False),
    col("immutable", pa.bool_(), "True when it cannot be granted or revoked through group membership "
        "(team administrators are set on the team).", nullable=False),
    col("group_id", pa.string(), "The group whose (transitive) members hold it: the group itself for group "
        "`member`, the backing group for team `member`, the built-in group for a project role; null for "
        "project `member` (any group of the project confers it), team `admin` and licences."),
    col("project_id", pa.string(), "Project of the resource, when it belongs to one."),
    col("is_paid", pa.bool_(), "Licences: true for levels billed to the organization (Basic, Basic + Test "
        "Plans, legacy VS Professional); null for other entitlements."),
)

_GRANT_COLUMNS = (
    col("entitlement_id", DSTR, "Entitlement (see entitlements).", nullable=False),
    col("resource_type", DSTR8, "Type of the resource the entitlement is on.", nullable=False),
    col("resource_id", DSTR, "Id of the resource the entitlement is on.", nullable=False),
    col("entitlement", DSTR8, "Entitlement slug.", nullable=False),
    col("principal_type", DSTR8, "user, service_account, service_principal or group.", nullable=False),
    col("principal_id", DSTR, "Subject descriptor of the principal.", nullable=False),
)

GRANTS = table_schema(
    "Direct grants only (entitlement × principal): group and team memberships as they are in the raw "
    "tables, team administrators, licences, and project roles held by direct members of the project's "
    "groups. Nested groups are resolved in effective_grants.",
    ["entitlement_id", "principal_id", "source_id"],
    *_GRANT_COLUMNS,
    col("source_id", DSTR, "Baton grant source: the group whose direct member the principal is, when the "
        "entitlement belongs to another resource (team `member`: the backing group; project roles: the "
        "built-in group; project `member`: each project group, one row per group). Null when the principal "
        "holds the entitlement itself (group membership, team admin, licence)."),
)

EFFECTIVE_GRANTS = table_schema(
    "Transitive closure of grants through nested groups (Azure DevOps and Entra): one row per (principal, "
    "entitlement) with the shortest chain of groups that explains it. A superset of grants.",
    ["entitlement_id", "principal_id"],
    *_GRANT_COLUMNS,
    col("via", DSTR8, _VIA_DOC, nullable=False),
    col("depth", pa.int32(), "Number of groups in `path` (0 = direct).", nullable=False),
    col("path", PATH, _PATH_DOC, nullable=False),
    col("source_id", DSTR, "Baton grant source: the group the chain ends in (team and project entitlements; "
        "see grants.source_id); null for group membership, team admin and licences."),
)

ACCESS_BY_PRINCIPAL = table_schema(
    "Everything each principal can reach: one row per (principal, resource) with the entitlements held on "
    "it and the shortest chain that explains the access.",
    ["principal_id", "resource_type", "resource_id"],
    col("principal_type", DSTR8, "user, service_account, service_principal or group.", nullable=False),
    col("principal_id", DSTR, "Subject descriptor of the principal.", nullable=False),
    col("principal_name", DSTR, "Principal's display name."),
    col("resource_type", DSTR8, "group, team, project or organization.", nullable=False),
    col("resource_id", DSTR, "Resource id.", nullable=False),
    col("resource_name", DSTR, "Resource display name."),
    col("project_id", DSTR, "Project of the resource, when it belongs to one."),
    col("entitlements", pa.list_(pa.field("item", DSTR8)), "Entitlement slugs held on the resource (sorted).",
        nullable=False),
    col("via", DSTR8, _VIA_DOC + " Of the shortest chain among the entitlements.", nullable=False),
    col("depth", pa.int32(), "Shortest chain length over the entitlements (0 = direct).", nullable=False),
    col("path", PATH, _PATH_DOC, nullable=False),
)

PRINCIPALS_BY_PROJECT = table_schema(
    "Who can reach each project and how: one row per (project, principal) holding the project's `member` "
    "entitlement, with the roles held and the shortest chain into the project. The project's own groups "
    "(built-in groups, team groups) are not listed as principals of it.",
    ["project_id", "principal_id"],
    col("project_id", DSTR, "Project id.", nullable=False),
    col("project_name", DSTR, "Project name."),
    col("principal_type", DSTR8, "user, service_account, service_principal or group.", nullable=False),
    col("principal_id", DSTR, "Subject descriptor of the principal.", nullable=False),
    col("principal_name", DSTR, "Principal's display name."),
    col("roles", pa.list_(pa.field("item", DSTR8)), "Project roles held, through any chain (sorted slugs of "
        "the built-in groups).", nullable=False),
    col("is_project_admin", pa.bool_(), "True when `roles` contains project_administrators.", nullable=False),
    col("via", DSTR8, _VIA_DOC, nullable=False),
    col("depth", pa.int32(), "Number of groups in `path` (0 = direct member of a project group).",
        nullable=False),
    col("path", PATH, _PATH_DOC, nullable=False),
    col("path_names", pa.list_(pa.field("item", DSTR)), "Display names of the groups in `path`.",
        nullable=False),
    col("source_id", DSTR, "The project group the chain enters the project through.", nullable=False),
    col("source_name", DSTR, "Display name of that group."),
)

MEMBERSHIP_CYCLES = table_schema(
    "Circular group memberships found in the raw memberships (Azure DevOps rejects them, but real data has "
    "surprised others): one row per strongly connected set of groups. The closure never loops on them.",
    ["cycle_id"],
    col("cycle_id", pa.int32(), "Sequence number.", nullable=False),
    col("size", pa.int32(), "Number of groups in the set.", nullable=False),
    col("group_ids", NAMES, "Descriptors of the groups that reach each other (sorted).", nullable=False),
    col("example", NAMES, "One closed cycle: each group is a direct member of the next, and the last equals "
        "the first.", nullable=False),
)

DERIVED_TABLES: dict[str, pa.Schema] = {
    "resource_types": RESOURCE_TYPES,
    "resources": RESOURCES,
    "entitlements": ENTITLEMENTS,
    "grants": GRANTS,
    "effective_grants": EFFECTIVE_GRANTS,
    "access_by_principal": ACCESS_BY_PRINCIPAL,
    "principals_by_project": PRINCIPALS_BY_PROJECT,
    "membership_cycles": MEMBERSHIP_CYCLES,
}
