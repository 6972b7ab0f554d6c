"""PAT scopes per route (from the 7.1 specs' `security` entries), named as the Azure DevOps UI does."""

from __future__ import annotations

from .transport import Scope

GRAPH_READ = Scope("Graph (Read)", "vso.graph")
GRAPH_MANAGE = Scope("Graph (Read & manage)", "vso.graph_manage")
IDENTITY_READ = Scope("Identity (Read)", "vso.identity")
PROJECT_READ = Scope("Project and Team (Read)", "vso.project")
ENTITLEMENTS_READ = Scope("Member Entitlement Management (Read)", "vso.memberentitlementmanagement")
ENTITLEMENTS_WRITE = Scope("Member Entitlement Management (Read & write)",
                           "vso.memberentitlementmanagement_write")
AUDIT_READ = Scope("Audit Log (Read)", "vso.auditlog",
                   " (and auditing must be on for the organization)")
PROFILE_READ = Scope("User Profile (Read)", "vso.profile",
                     " and must be created for 'All accessible organizations'")
SECURITY_MANAGE = Scope("Security (Manage)", "vso.security_manage",
                        " (only to read team administrators in one request; without it they are read per team)")
