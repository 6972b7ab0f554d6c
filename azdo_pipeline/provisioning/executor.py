"""Carry out one provisioning request: `await execute(request, ctx) -> Outcome`.

Rules (the product contract; ConductorOne's Azure DevOps connector behaves the same way):
- `deprovision_account` is refused without any call: accounts are removed in Azure DevOps itself.
- `create_account` looks the user up first (an existing user is `already_done`), then POSTs a user
  entitlement with the licence (learn.microsoft.com/rest/api/azure/devops/memberentitlementmanagement/
  user-entitlements/add); `operationResult` errors come back in plain words.
- `grant` / `revoke` on an Azure DevOps group or a team's group: HEAD the membership, then PUT / DELETE
  (learn.microsoft.com/rest/api/azure/devops/graph/memberships). Checking first makes a re-run after
  a crash safe: what is already done is reported `already_done`.
- Entra-managed groups (`aadgp.`): with PAT auth or `entra_group_provisioning` off, accepted as
  `skipped_entra_managed` with no API call at all. With OAuth and the setting on, Microsoft Graph
  `POST /groups/{id}/members/$ref` / `DELETE /groups/{id}/members/{member}/$ref`
  (learn.microsoft.com/graph/api/group-post-members) with the app's client-credentials token; the
  change reaches Azure DevOps later, so it is recorded `pending` (see `confirm`).
- A dry run (the request's flag or the context's) resolves names from the synced tables only and
  reports the calls it would make, making none.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client import AzureDevOpsClient, MicrosoftGraphClient
from ..client.calls import RecordedCall, attach, record_calls
from ..client.errors import AuthenticationError, AzureDevOpsError, NotFoundError, PermissionDeniedError
from ..client.writes import MembershipWrites
from ..config import OAuthAuth, OrganizationConfig
from .outcomes import ApiCall, Outcome, Status
from .requests import Action, License, Request, TargetRef, now_utc
from .resolve import Directory, Subject, Unresolved, subject_from_graph, target_principal_name

log = logging.getLogger("azdo_pipeline.provisioning")

# Request licence -> the key of azdo_pipeline.client.entitlements.LICENSES.
LICENSE_KEYS: dict[License, str] = {License.EXPRESS: "express", License.STAKEHOLDER: "stakeholder",
                                    License.VISUAL_STUDIO_SUBSCRIBER: "vs_subscriber"}

# Known Member Entitlement Management operationResult codes, in plain words with the fix.
ENTITLEMENT_ERRORS: dict[int, str] = {
    5000: "the service rejected the request as written (check the principal name / e-mail and the projects)",
    5032: "the identity running the pipeline may not add users: make it a Project Collection Administrator "
          "(or give it the 'Add Users' permission)",
    5101: "the organization's policy blocks adding people from outside the directory (external guest access); "
          "allow it in Organization settings → Policies, or use a member of the directory",
    5102: "inviting a person from outside the directory failed; check the e-mail and the tenant's guest "
          "invitation settings",
}

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GRAPH_PERMISSION_FIX = ("grant the Entra app the Microsoft Graph application permission GroupMember.ReadWrite.All "
                        "and have an administrator grant admin consent")


@dataclass
class ProvisioningContext:
    """What `execute` needs for one organization. Clients are made on first use: a request that needs
    no call (refused, Entra no-op, dry run) makes none, not even service discovery."""

    org: OrganizationConfig
    connect: Callable[[], Awaitable[AzureDevOpsClient]]
    directory: Directory = field(default_factory=Directory)
    connect_msgraph: Callable[[], Awaitable[MicrosoftGraphClient]] | None = None
    dry_run: bool = False  # the job's setting: every request is a dry run
    now: Callable[[], datetime] = now_utc
    _client: AzureDevOpsClient | None = field(default=None, init=False, repr=False)
    _msgraph: MicrosoftGraphClient | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    def _connecting(self) -> asyncio.Lock:
        # Requests of one batch run concurrently: connect once.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def uses_oauth(self) -> bool:
        return isinstance(self.org.auth, OAuthAuth)

    @property
    def entra_writes(self) -> bool:
        """Entra group membership goes through Microsoft Graph (OAuth and the setting on)."""
        return self.uses_oauth and self.org.entra_group_provisioning

    async def client(self) -> AzureDevOpsClient:
        async with self._connecting():
            if self._client is None:
                client = await self.connect()
                attach(client)
                self._client = client
            return self._client

    async def msgraph(self) -> MicrosoftGraphClient:
        async with self._connecting():
            if self._msgraph is None:
                if self.connect_msgraph is None:
                    raise Unresolved("Entra group provisioning is on but no Microsoft Graph client was configured")
                graph = await self.connect_msgraph()
                attach(graph)
                self._msgraph = graph
            return self._msgraph

    async def aclose(self) -> None:
        for c in (self._client, self._msgraph):
            if c is not None:
                await c.aclose()
        self._client = self._msgraph = None


@dataclass
class _Result:
    status: Status
    message: str
    principal_descriptor: str | None = None
    target_descriptor: str | None = None
    planned: list[ApiCall] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)


async def execute(request: Request, ctx: ProvisioningContext) -> Outcome:
    """Carry out `request`; every request ends in one Outcome (this never raises for the request's own
    failure: the outcome is `failed` with the cause and the fix)."""
    started = ctx.now()
    dry = request.dry_run or ctx.dry_run
    with record_calls() as calls:
        try:
            if request.organization.lower() != ctx.org.name.lower():
                result = _Result(Status.FAILED, f"the request is for organization {request.organization!r} but was "
                                                f"run for {ctx.org.name!r}; route it to its organization")
            else:
                result = await _dispatch(request, ctx, dry)
        except Unresolved as exc:
            result = _Result(Status.FAILED, str(exc))
        except AzureDevOpsError as exc:
            result = _Result(Status.FAILED, _explain(exc, request))
        except Exception as exc:  # a request must end with an outcome, whatever went wrong
            log.exception("provisioning request %s failed unexpectedly", request.id)
            result = _Result(Status.FAILED, f"unexpected error ({type(exc).__name__}: {exc}); the request was "
                                            "not carried out, or only partly: run it again (it checks first)")
    made = [_api_call(c) for c in calls]
    return Outcome.for_request(
        request, result.status, result.message, principal_descriptor=result.principal_descriptor,
        target_descriptor=result.target_descriptor, api_calls=tuple(made + result.planned), dry_run=dry,
        requested_at=request.requested_at or started, started_at=started, finished_at=ctx.now(),
        details=result.details)


def _api_call(c: RecordedCall) -> ApiCall:
    return ApiCall(c.method, c.url, c.status)


async def _dispatch(request: Request, ctx: ProvisioningContext, dry: bool) -> _Result:
    if request.action is Action.DEPROVISION_ACCOUNT:
        return _Result(Status.REFUSED, f"accounts are not deprovisioned by this connector: remove {request.principal} "
                                       "in Azure DevOps itself (Organization settings → Users → Remove from "
                                       "organization). No change was made.")
    if request.action is Action.CREATE_ACCOUNT:
        return await _create_account(request, ctx, dry)
    assert request.target is not None
    return await _membership(request, request.target, ctx, dry)


# ---- accounts --------------------------------------------------------------------------------------------
async def _create_account(request: Request, ctx: ProvisioningContext, dry: bool) -> _Result:
    name = request.principal.name or ""
    assert request.license is not None
    lic = LICENSE_KEYS[request.license]
    if dry:
        known = ctx.directory.principal(request.principal)
        base = ctx.org.url.rstrip("/")
        planned = [ApiCall("GET", f"{base}/_apis/userentitlements"), ApiCall("POST", f"{base}/_apis/userentitlements")]
        note = " (the synced tables already list this user: it would be already_done)" if known else ""
        return _Result(Status.SUCCEEDED, f"dry run: would create an account for {name} with licence "
                                         f"{request.license.value}{note}; no call made",
                       known.descriptor if known else None, planned=planned)
    client = await ctx.client()
    projects = await _project_entitlements(request, client)
    out: dict[str, Any] = await client.entitlements.add_user_entitlement(name, lic, project_entitlements=projects)
    descriptor = out.get("descriptor")
    if out["outcome"] == "already_exists":
        return _Result(Status.ALREADY_DONE, f"{name} already has an account in {ctx.org.name} (licence "
                                            f"{out.get('license') or 'unknown'}); nothing changed", descriptor)
    if out["outcome"] == "created":
        return _Result(Status.SUCCEEDED, f"created an account for {name} with licence {out.get('license') or lic}"
                                         + (f" and {len(projects)} project(s)" if projects else ""), descriptor)
    return _Result(Status.FAILED, "Azure DevOps did not create the account: " + _entitlement_errors(out), descriptor)


def _entitlement_errors(out: dict[str, Any]) -> str:
    parts = []
    for e in out.get("errors") or []:
        code = e.get("code")
        plain = ENTITLEMENT_ERRORS.get(code) if isinstance(code, int) else None
        server = str(e.get("message") or "").strip()
        parts.append(f"{plain} (service said: ({code}) {server})" if plain else f"({code}) {server}")
    return "; ".join(parts) or str(out.get("message") or "the service refused without saying why")


async def _project_entitlements(request: Request, client: AzureDevOpsClient) -> list[dict[str, Any]]:
    if not request.projects:
        return []
    ids: dict[str, str] = {}
    if any(not _GUID.match(p.project) for p in request.projects):
        async for page in client.core.iter_projects():
            for proj in page:
                if proj.get("name") and proj.get("id"):
                    ids[str(proj["name"]).lower()] = str(proj["id"])
    out = []
    for p in request.projects:
        pid = p.project if _GUID.match(p.project) else ids.get(p.project.lower())
        if pid is None:
            raise Unresolved(f"project {p.project!r} does not exist in {client.org}; check the name in "
                             "projects (or use the project id)")
        out.append({"group": {"groupType": p.role.group_type}, "projectRef": {"id": pid}})
    return out


# ---- memberships -----------------------------------------------------------------------------------------
def _entra_skip(request: Request, ctx: ProvisioningContext, target: Subject | str) -> _Result:
    why = ("the organization uses PAT auth, and PATs cannot change Entra group membership" if not ctx.uses_oauth
           else "the setting entra_group_provisioning is off")
    shown = target if isinstance(target, str) else target.name or target.descriptor
    return _Result(Status.SKIPPED_ENTRA_MANAGED,
                   f"{shown} is managed in Microsoft Entra ({why}): accepted without any change or API call; "
                   f"change its membership in Entra, or turn on entra_group_provisioning with OAuth",
                   target_descriptor=target if isinstance(target, str) else target.descriptor)


async def _membership(request: Request, ref: TargetRef, ctx: ProvisioningContext, dry: bool) -> _Result:
    grant = request.action is Action.GRANT
    # Entra-managed? Decided before any call, from the descriptor or the synced tables.
    known_target = ctx.directory.target(ref)
    if ref.is_entra_group and not ctx.entra_writes:
        return _entra_skip(request, ctx, ref.descriptor or "")
    if known_target is not None and known_target.subject_type == "aadgp" and not ctx.entra_writes:
        return _entra_skip(request, ctx, known_target)

    target = known_target or (None if dry else await _lookup_target(ref, ctx))
    if target is not None and target.subject_type == "aadgp" and not ctx.entra_writes:
        return _entra_skip(request, ctx, target)
    principal = ctx.directory.principal(request.principal) or (
        None if dry else await _lookup_principal(request, ctx))

    if dry:
        return _plan_membership(request, ref, target, principal, ctx)
    assert target is not None and principal is not None
    if target.kind != "group":
        raise Unresolved(f"{ref} is not a group or team ({target.kind}); give a group descriptor, "
                         "[Project]\\Group Name or Project\\Team")
    if target.subject_type == "aadgp":
        return await _entra_membership(request, target, principal, ctx, grant)

    writes = MembershipWrites(await ctx.client())
    names = f"{principal.name or principal.descriptor} {'to' if grant else 'from'} {target.name or ref}"
    present = await writes.exists(target.descriptor, principal.descriptor)
    if grant and present:
        return _Result(Status.ALREADY_DONE, f"already a direct member: nothing to add ({names})",
                       principal.descriptor, target.descriptor)
    if not grant and not present:
        return _Result(Status.ALREADY_DONE, f"not a direct member: nothing to remove ({names})",
                       principal.descriptor, target.descriptor)
    if grant:
        await writes.put(target.descriptor, principal.descriptor)
        return _Result(Status.SUCCEEDED, f"added {names}", principal.descriptor, target.descriptor)
    removed = await writes.delete(target.descriptor, principal.descriptor)
    return _Result(Status.SUCCEEDED if removed else Status.ALREADY_DONE,
                   f"removed {names}" if removed else f"already removed meanwhile ({names})",
                   principal.descriptor, target.descriptor)


def _plan_membership(request: Request, ref: TargetRef, target: Subject | None, principal: Subject | None,
                     ctx: ProvisioningContext) -> _Result:
    grant = request.action is Action.GRANT
    t = target.descriptor if target else f"{{descriptor of {ref}}}"
    p = principal.descriptor if principal else f"{{descriptor of {request.principal}}}"
    planned: list[ApiCall] = []
    vssps = _vssps_base(ctx)
    if target is None:
        planned.append(ApiCall("POST", f"{vssps}/_apis/graph/subjectquery"))
    if principal is None:
        planned.append(ApiCall("POST", f"{vssps}/_apis/graph/subjectquery"))
    if target is not None and target.subject_type == "aadgp":
        graph = _graph_base(ctx)
        gid = target.origin_id or "{entra id}"
        mid = (principal.origin_id if principal else None) or "{entra id}"
        planned.append(ApiCall("POST", f"{graph}/v1.0/groups/{gid}/members/$ref") if grant else
                       ApiCall("DELETE", f"{graph}/v1.0/groups/{gid}/members/{mid}/$ref"))
    else:
        edge = f"{vssps}/_apis/graph/memberships/{p}/{t}"
        planned += [ApiCall("HEAD", edge), ApiCall("PUT" if grant else "DELETE", edge)]
    return _Result(Status.SUCCEEDED, f"dry run: would {'add' if grant else 'remove'} {request.principal} "
                                     f"{'to' if grant else 'from'} {ref} if needed (checked first); no call made",
                   principal.descriptor if principal else None, target.descriptor if target else None,
                   planned=planned)


def _vssps_base(ctx: ProvisioningContext) -> str:
    if ctx._client is not None:
        return ctx._client.urls.graph
    url = ctx.org.url.rstrip("/")
    # The documented host of the Graph area (learn.microsoft.com/azure/devops/extend/develop/work-with-urls).
    m = re.match(r"^https://dev\.azure\.com/([^/]+)$", url)
    return f"https://vssps.dev.azure.com/{m.group(1)}" if m else url


def _graph_base(ctx: ProvisioningContext) -> str:
    if ctx._msgraph is not None:
        return ctx._msgraph.base_url
    auth = ctx.org.auth
    return auth.graph_host if isinstance(auth, OAuthAuth) else "https://graph.microsoft.com"


async def _lookup_target(ref: TargetRef, ctx: ProvisioningContext) -> Subject:
    client = await ctx.client()
    if ref.descriptor:
        found = (await client.graph.lookup_subjects([ref.descriptor])).get(ref.descriptor)
        s = subject_from_graph(found) if found else None
        if s is None:
            raise Unresolved(f"unknown group {ref.descriptor}: Azure DevOps has no subject with this descriptor; "
                             "check it against the synced groups table")
        return s
    wanted = target_principal_name(ref)
    group_name = wanted.split("\\", 1)[1]
    for hit in await MembershipWrites(client).subject_query(group_name, ("Group",)):
        if str(hit.get("principalName") or "").lower() == wanted.lower():
            s = subject_from_graph(hit)
            if s is not None:
                return s
    what, form = ("team", "Project\\Team") if ref.team else ("group", "[Project]\\Group Name")
    raise Unresolved(f"unknown {what} {ref}: no group named {wanted} in {ctx.org.name}; check the spelling "
                     f"({form} as Azure DevOps shows it) or give its descriptor")


async def _lookup_principal(request: Request, ctx: ProvisioningContext) -> Subject:
    ref = request.principal
    client = await ctx.client()
    if ref.descriptor:
        found = (await client.graph.lookup_subjects([ref.descriptor])).get(ref.descriptor)
        s = subject_from_graph(found) if found else None
        if s is None:
            raise Unresolved(f"unknown principal {ref.descriptor}: Azure DevOps has no subject with this "
                             "descriptor; check it against the synced users table")
        return s
    name = ref.name or ""
    if ref.is_group:
        return await _lookup_target(TargetRef(group=name), ctx)
    for hit in await MembershipWrites(client).subject_query(name, ("User",)):
        names = {str(hit.get("principalName") or "").lower(), str(hit.get("mailAddress") or "").lower()}
        if name.lower() in names:
            s = subject_from_graph(hit)
            if s is not None:
                return s
    raise Unresolved(f"unknown principal {name}: no user with this principal name or e-mail in {ctx.org.name}; "
                     "check the spelling, or add the person first with a create_account request")


async def _entra_membership(request: Request, target: Subject, principal: Subject, ctx: ProvisioningContext,
                            grant: bool) -> _Result:
    if principal.subject_type not in ("aad", "aadgp", "aadsp"):
        raise Unresolved(f"{principal.name or principal.descriptor} is not an Entra identity "
                         f"({principal.subject_type}); only Entra users, groups and service principals can be "
                         f"members of the Entra group {target.name or target.descriptor}")
    group_id = target.origin_id or await _origin_id(ctx, target)
    member_id = principal.origin_id or await _origin_id(ctx, principal)
    graph = await ctx.msgraph()
    details = {"entra_group_id": group_id, "entra_member_id": member_id}
    names = f"{principal.name or principal.descriptor} {'to' if grant else 'from'} {target.name or target.descriptor}"
    try:
        changed = await (graph.add_group_member(group_id, member_id) if grant
                         else graph.remove_group_member(group_id, member_id))
    except PermissionDeniedError as exc:
        return _Result(Status.FAILED, f"Microsoft Graph refused to change the Entra group (HTTP {exc.status}): the "
                                      f"Entra app lacks GroupMember.ReadWrite.All; {GRAPH_PERMISSION_FIX}",
                       principal.descriptor, target.descriptor, details=details)
    if not changed:
        return _Result(Status.ALREADY_DONE, f"Entra already had it: {'already a member' if grant else 'not a member'}"
                                            f" ({names})", principal.descriptor, target.descriptor, details=details)
    return _Result(Status.PENDING, f"{'added' if grant else 'removed'} {names} in Microsoft Entra; Azure DevOps "
                                   "shows it after propagation (up to an hour): pending until it does",
                   principal.descriptor, target.descriptor, details=details)


async def _origin_id(ctx: ProvisioningContext, s: Subject) -> str:
    client = await ctx.client()
    found = (await client.graph.lookup_subjects([s.descriptor])).get(s.descriptor) or {}
    oid = found.get("originId")
    if not oid:
        raise Unresolved(f"cannot tell the Entra object id of {s.name or s.descriptor} (no originId); "
                         "sync the organization and retry")
    return str(oid)


def _explain(exc: AzureDevOpsError, request: Request) -> str:
    """Plain words, cause and fix, for a service error ending a request."""
    target = str(request.target) if request.target else ""
    if exc.type_key == "AddMemberCyclicMembershipException":
        return (f"granting {request.principal} membership of {target} would make a cycle: {request.principal} "
                f"already contains {target} (directly or through nested groups); nest the groups the other way "
                f"round or grant the people directly. Service said: {exc.message}")
    write = exc.endpoint.split(" ", 1)[0] in ("PUT", "DELETE", "POST") and "subjectquery" not in exc.endpoint
    if isinstance(exc, AuthenticationError) and write and "memberships" in exc.endpoint:
        return ("Azure DevOps refused the membership change (HTTP 401): the credential lacks the Graph (Read & "
                "manage) scope (vso.graph_manage); create the PAT with 'Graph (Read & manage)' (or add the scope "
                f"to the app) and retry. Service said: {exc.message}")
    if isinstance(exc, AuthenticationError) and "userentitlements" in exc.endpoint:
        return ("Azure DevOps refused to create the account (HTTP 401): the credential lacks the Member "
                "Entitlement Management (Read & write) scope (vso.memberentitlementmanagement_write); add it "
                f"and retry. Service said: {exc.message}")
    if isinstance(exc, PermissionDeniedError):
        return (f"Azure DevOps denied the change (HTTP 403): the identity running the pipeline lacks the "
                f"permission (e.g. Project or Project Collection Administrator) for {target or 'this action'}. "
                f"Service said: {exc.message}")
    if isinstance(exc, NotFoundError) and "memberships" in exc.endpoint:
        return (f"unknown group or principal: Azure DevOps does not know {target} or {request.principal} "
                f"(deleted since the last sync?); sync the organization and check the names. "
                f"Service said: {exc.message}")
    if exc.status == 400 and "memberships" in exc.endpoint:
        return (f"Azure DevOps rejected the membership check/change (HTTP 400): {request.principal} or {target} "
                f"is not a valid member/group descriptor (unknown principal?); check them. Service said: "
                f"{exc.message}")
    return f"{exc} (HTTP {exc.status or 'no response'}); the request can be run again safely (it checks first)"


__all__ = ["ENTITLEMENT_ERRORS", "LICENSE_KEYS", "ProvisioningContext", "execute"]
