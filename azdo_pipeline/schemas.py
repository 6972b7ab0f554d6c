"""Arrow schemas of the raw Parquet tables (one per synced resource kind).

Every column carries a description in its field metadata; docs/tables.md is generated from these
schemas (see `azdo_pipeline.docs`), so the analysts' reference cannot drift from the data.
Derived access-graph tables are in `azdo_pipeline.accessgraph.schemas`.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


def col(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def table_schema(description: str, key: list[str], *fields: pa.Field) -> pa.Schema:
    """A schema whose metadata holds the table description and its primary key columns."""
    return pa.schema(list(fields), metadata={"description": description, "key": ",".join(key)})


USERS = table_schema(
    "People with access to the organization: Graph users (Entra `aad` and Microsoft-account `msa`) "
    "joined with their user entitlement (licence, status, last access).",
    ["descriptor"],
    col("descriptor", pa.string(), "Graph subject descriptor (stable id), e.g. `aad.…`.", nullable=False),
    col("storage_key", pa.string(), "Identity id (GUID; the id audit events and the identities API use), from "
        "the user entitlement; null for a user without one."),
    col("subject_type", pa.string(), "Descriptor prefix: `aad` or `msa`.", nullable=False),
    col("origin", pa.string(), "Source directory: `aad` (Entra) or `msa`."),
    col("origin_id", pa.string(), "Object id in the source directory (Entra object id for `aad`)."),
    col("principal_name", pa.string(), "Sign-in name (UPN or e-mail)."),
    col("display_name", pa.string(), "Display name."),
    col("mail_address", pa.string(), "E-mail address."),
    col("domain", pa.string(), "Entra tenant id for `aad` users, `Windows Live ID` for `msa`."),
    col("meta_type", pa.string(), "`member` or `guest` (Entra user type)."),
    col("license", pa.string(),
        "accountLicenseType: none, express (Basic), stakeholder, advanced (Basic + Test Plans), "
        "professional, earlyAdopter. Null when the user has no entitlement."),
    col("licensing_source", pa.string(),
        "none, account, msdn (Visual Studio subscription), profile, auto, trial."),
    col("msdn_license_type", pa.string(), "Visual Studio subscription level when licensing_source is msdn."),
    col("license_display_name", pa.string(), "Licence name as the Azure DevOps UI shows it."),
    col("status", pa.string(),
        "Entitlement status: active, pending, disabled, deleted, expired, pendingDisabled."),
    col("last_accessed", TS, "Last access to the organization; null when the user never signed in."),
    col("date_created", TS, "When the user was added to the organization."),
)

SERVICE_ACCOUNTS = table_schema(
    "Service identities (`svc.` descriptors), e.g. project build services.",
    ["descriptor"],
    col("descriptor", pa.string(), "Graph subject descriptor, `svc.…`.", nullable=False),
    col("principal_name", pa.string(), "Service identity name, e.g. `{hostId}:Build:{projectId}`."),
    col("display_name", pa.string(), "Display name, e.g. `Fabrikam Build Service (fabrikam)`."),
    col("domain", pa.string(), "Identity domain."),
    col("origin", pa.string(), "Always `vsts`."),
    col("origin_id", pa.string(), "Identity id in Azure DevOps."),
)

SERVICE_PRINCIPALS = table_schema(
    "Entra service principals and managed identities added to the organization (`aadsp.`).",
    ["descriptor"],
    col("descriptor", pa.string(), "Graph subject descriptor, `aadsp.…`.", nullable=False),
    col("display_name", pa.string(), "Display name."),
    col("application_id", pa.string(), "Entra application (client) id."),
    col("origin_id", pa.string(), "Entra object id of the service principal."),
    col("domain", pa.string(), "Entra tenant id."),
)

GROUPS = table_schema(
    "Azure DevOps groups (`vssgp.`) and Entra groups materialized in the organization (`aadgp.`).",
    ["descriptor"],
    col("descriptor", pa.string(), "Graph subject descriptor.", nullable=False),
    col("storage_key", pa.string(), "Identity id (GUID) of Azure DevOps groups (their originId); equals the team "
        "id for team groups. Null for Entra groups."),
    col("kind", pa.string(), "`vssgp` (Azure DevOps group) or `aadgp` (Entra group).", nullable=False),
    col("display_name", pa.string(), "Group name."),
    col("principal_name", pa.string(), "Qualified name, e.g. `[Project]\\Contributors`."),
    col("description", pa.string(), "Description."),
    col("scope", pa.string(), "`project` or `organization`.", nullable=False),
    col("project_id", pa.string(), "Project id for project-scoped groups, else null."),
    col("is_team", pa.bool_(), "True when the group backs a team.", nullable=False),
    col("origin", pa.string(), "`vsts` or `aad`."),
    col("origin_id", pa.string(), "Entra group object id for `aadgp`, identity id for `vssgp`."),
    col("domain", pa.string(), "Identity domain (project or organization URI, or Entra tenant id)."),
)

MEMBERSHIPS = table_schema(
    "Direct group memberships: one row per edge container → member (not transitive).",
    ["container_descriptor", "member_descriptor"],
    col("container_descriptor", pa.string(), "The group.", nullable=False),
    col("member_descriptor", pa.string(), "The direct member.", nullable=False),
    col("member_kind", pa.string(), "user, service_account, service_principal or group.", nullable=False),
)

PROJECTS = table_schema(
    "Projects of the organization.",
    ["id"],
    col("id", pa.string(), "Project id (GUID).", nullable=False),
    col("name", pa.string(), "Project name."),
    col("description", pa.string(), "Description."),
    col("state", pa.string(), "wellFormed, createPending, deleting, …"),
    col("visibility", pa.string(), "private or public."),
    col("revision", pa.int64(), "Revision number."),
    col("last_update_time", TS, "Last update."),
)

TEAMS = table_schema(
    "Teams of every project (when the `sync_teams` setting is on).",
    ["id"],
    col("id", pa.string(), "Team id (GUID); equals the storage key of the team's group.", nullable=False),
    col("name", pa.string(), "Team name."),
    col("description", pa.string(), "Description."),
    col("project_id", pa.string(), "Project id.", nullable=False),
    col("project_name", pa.string(), "Project name."),
)

TEAM_MEMBERS = table_schema(
    "Direct members and administrators of each team (when `sync_teams` is on). An administrator "
    "need not be a member: such a row has `is_member` false. Administrators who are not members are "
    "only visible when the credential may read security ACLs (Security (Manage)).",
    ["team_id", "member_descriptor"],
    col("team_id", pa.string(), "Team id.", nullable=False),
    col("member_descriptor", pa.string(), "Member's (or administrator's) subject descriptor.", nullable=False),
    col("member_storage_key", pa.string(), "Member's identity id."),
    col("display_name", pa.string(), "Member's display name."),
    col("is_team_admin", pa.bool_(), "True for team administrators.", nullable=False),
    col("is_member", pa.bool_(), "True for direct members of the team (its backing group).", nullable=False),
)

ORGANIZATIONS = table_schema(
    "Organizations the authenticated identity belongs to (when `sync_organizations` is on).",
    ["id"],
    col("id", pa.string(), "Organization (account) id.", nullable=False),
    col("name", pa.string(), "Organization name."),
    col("url", pa.string(), "Organization URL."),
    col("status", pa.string(), "Account status."),
)

RAW_TABLES: dict[str, pa.Schema] = {
    "users": USERS,
    "service_accounts": SERVICE_ACCOUNTS,
    "service_principals": SERVICE_PRINCIPALS,
    "groups": GROUPS,
    "memberships": MEMBERSHIPS,
    "projects": PROJECTS,
    "teams": TEAMS,
    "team_members": TEAM_MEMBERS,
    "organizations": ORGANIZATIONS,
}


AUDIT_LOG = table_schema(
    "The organization's audit log (Azure DevOps auditing, when it is on), appended on every run that "
    "reads it and kept beyond the service's 90-day retention. Not a snapshot table: Hive-style folders "
    "`{data_dir}/audit_log/org={org}/day={YYYY-MM-DD}/part-*.parquet` (the `org` and `day` columns come "
    "from the folder names); re-reading an overlapping window never duplicates an event. Event fields: "
    "https://learn.microsoft.com/azure/devops/organizations/audit/auditing-events",
    ["event_id"],
    col("event_id", pa.string(), "Entry id (`{ticks};{actor};{guid}`), unique per event.", nullable=False),
    col("timestamp", TS, "When the action happened (UTC).", nullable=False),
    col("action_id", pa.string(), "What happened, e.g. `Group.UpdateGroupMembership.Add`, `Licensing.Modified`.",
        nullable=False),
    col("area", pa.string(), "Area of the action (e.g. `Security`, `Licensing`, `Project`, `Auditing`)."),
    col("category", pa.string(), "create, modify, remove, access, execute or unknown."),
    col("details", pa.string(), "Human-readable description, e.g. `Alice was added to group [Alpha]\\Readers.`"),
    col("data", pa.string(), "The action's parameters as JSON (e.g. `GroupId`, `GroupName`, `MemberId`, "
        "`MemberDisplayName` for membership changes; `UserIdentifier`, `AccessLevel` for licences). Identity "
        "ids are storage keys (`users.storage_key`, `groups.storage_key`)."),
    col("actor_user_id", pa.string(), "Storage key of the acting identity (`00000002-0000-8888-8000-000000000000`-"
        "style ids for the service itself)."),
    col("actor_upn", pa.string(), "Sign-in name of the acting user."),
    col("actor_display_name", pa.string(), "Display name of the actor (`Azure DevOps Service` for system changes)."),
    col("actor_cuid", pa.string(), "Consistent user id of the actor."),
    col("actor_client_id", pa.string(), "Client (application) id of the actor, for service principals."),
    col("authentication_mechanism", pa.string(), "How the actor signed in, e.g. `FedAuth`, `PAT_Unscoped`."),
    col("scope_type", pa.string(), "organization, project, …"),
    col("scope_id", pa.string(), "Id of the organization or project the action applies to."),
    col("project_id", pa.string(), "Project id for project-scoped actions."),
    col("project_name", pa.string(), "Project name at the time of the action."),
    col("ip_address", pa.string(), "Client IP address, when recorded."),
    col("user_agent", pa.string(), "Client user agent, when recorded."),
    col("correlation_id", pa.string(), "Shared by related events; equals `event_id`'s GUID for the originating one."),
    col("activity_id", pa.string(), "Request activity id."),
)


def key_columns(schema: pa.Schema) -> list[str]:
    key: bytes = (schema.metadata or {}).get(b"key", b"")
    return key.decode().split(",")
