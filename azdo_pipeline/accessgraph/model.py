"""The vocabulary of the access graph: resource types, project roles and licence levels.

Built-in project groups are recognised by their display name inside a project, as Azure DevOps
names them; licence levels come from the user entitlement's accountLicenseType and licensingSource.
"""

from __future__ import annotations

from dataclasses import dataclass

# Resource types, in the order resources are written.
ORGANIZATION = "organization"
PROJECT = "project"
TEAM = "team"
GROUP = "group"
USER = "user"
SERVICE_ACCOUNT = "service_account"
SERVICE_PRINCIPAL = "service_principal"
RESOURCE_TYPE_ORDER = (ORGANIZATION, PROJECT, TEAM, GROUP, USER, SERVICE_ACCOUNT, SERVICE_PRINCIPAL)

# Principal kinds (memberships.member_kind); "other" is a member whose descriptor we do not recognise.
PRINCIPAL_KINDS = (USER, SERVICE_ACCOUNT, SERVICE_PRINCIPAL, GROUP, "other")
KIND_USER, KIND_SERVICE_ACCOUNT, KIND_SERVICE_PRINCIPAL, KIND_GROUP, KIND_OTHER = range(5)
PRINCIPAL_TYPES = (USER, SERVICE_ACCOUNT, SERVICE_PRINCIPAL, GROUP)

MEMBER = "member"
ADMIN = "admin"


@dataclass(frozen=True)
class ResourceType:
    id: str
    display_name: str
    description: str
    traits: tuple[str, ...]
    account_type: str | None
    is_principal: bool
    source_table: str


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(USER, "User", "People: Entra (`aad.`) and Microsoft-account (`msa.`) users with their "
                 "licence, status and last access.", ("user",), "human", True, "users"),
    ResourceType(SERVICE_ACCOUNT, "Service account", "Azure DevOps service identities (`svc.`), e.g. "
                 "project build services.", ("user",), "service", True, "service_accounts"),
    ResourceType(SERVICE_PRINCIPAL, "Service principal", "Entra service principals and managed identities "
                 "(`aadsp.`).", ("app",), "service", True, "service_principals"),
    ResourceType(GROUP, "Group", "Azure DevOps groups (`vssgp.`) and Entra groups (`aadgp.`); groups are "
                 "principals too (nested membership).", ("group",), None, True, "groups"),
    ResourceType(TEAM, "Team", "Teams of a project; their members are the members of the backing group.",
                 ("group",), None, False, "teams"),
    ResourceType(PROJECT, "Project", "Projects; their roles are the built-in project groups.", (), None,
                 False, "projects"),
    ResourceType(ORGANIZATION, "Organization", "The organization itself; licences are its entitlements.", (),
                 None, False, "organizations"),
)


@dataclass(frozen=True)
class ProjectRole:
    slug: str
    group_name: str  # display name of the built-in group
    description: str


PROJECT_ROLES: tuple[ProjectRole, ...] = (
    ProjectRole("project_administrators", "Project Administrators",
                "Can perform all operations in the project."),
    ProjectRole("contributors", "Contributors", "Can add, modify and delete items within the project."),
    ProjectRole("readers", "Readers", "Have read access to the project."),
    ProjectRole("build_administrators", "Build Administrators",
                "Can create, modify and delete build definitions and manage builds."),
    ProjectRole("project_valid_users", "Project Valid Users", "Have access to the project."),
)
ROLE_BY_GROUP_NAME = {r.group_name.lower(): i for i, r in enumerate(PROJECT_ROLES)}
PROJECT_ADMIN_ROLE = "project_administrators"


@dataclass(frozen=True)
class LicenseLevel:
    slug: str
    display_name: str
    is_paid: bool  # billed to the organization
    description: str


LICENSE_LEVELS: tuple[LicenseLevel, ...] = (
    LicenseLevel("basic", "Basic", True, "accountLicenseType `express`."),
    LicenseLevel("basic_test_plans", "Basic + Test Plans", True, "accountLicenseType `advanced`."),
    LicenseLevel("stakeholder", "Stakeholder", False, "accountLicenseType `stakeholder` (free)."),
    LicenseLevel("visual_studio_subscriber", "Visual Studio subscriber", False,
                 "licensingSource `msdn`: the seat comes with a Visual Studio subscription."),
    LicenseLevel("visual_studio_professional", "VS Professional", True,
                 "accountLicenseType `professional` bought through the organization (legacy)."),
    LicenseLevel("early_adopter", "Early adopter", False, "accountLicenseType `earlyAdopter` (legacy)."),
)
_LEVEL_BY_LICENSE = {"express": "basic", "advanced": "basic_test_plans", "stakeholder": "stakeholder",
                     "professional": "visual_studio_professional", "earlyAdopter": "early_adopter"}


def license_level(license: str | None, licensing_source: str | None) -> str | None:
    """The organization licence entitlement a user holds; None without a licence."""
    if not license or license == "none":
        return None
    if licensing_source == "msdn":
        return "visual_studio_subscriber"
    return _LEVEL_BY_LICENSE.get(license)
