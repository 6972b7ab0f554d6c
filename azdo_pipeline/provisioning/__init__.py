"""Provisioning: carry out access requests (create account, grant, revoke) against Azure DevOps.

Interface (pure logic, no Dagster; HTTP only through `azdo_pipeline.client`). `requests.parse_request(raw)`
turns a file's bytes into a `Request` or raises `RequestError` (nothing else, whatever the input).
`executor.execute(request, ctx) -> Outcome` carries one request out; `ctx` is an
`executor.ProvisioningContext` (the organization's config, its `AzureDevOpsClient`, a
`MicrosoftGraphClient` when Entra group provisioning is on, the latest synced tables for name
resolution, a clock, and a job-level dry-run flag). It never raises for a request's own failure: every
request ends as one `outcomes.Outcome` (statuses in `outcomes.Status`); it always checks the service
before changing anything, so re-running a request after a crash is safe. Outcomes with status
`pending` (Entra changes through Microsoft Graph) are settled later by `confirm.check_pending(outcome,
ctx, now=..., wait=...)` -> confirmed / unconfirmed / still pending; the caller schedules it.
`outcomes.PROVISIONING_OUTCOMES` is the Arrow schema of the `provisioning_outcomes` table and
`outcomes.outcomes_table(...)` builds it. docs/requests.md is generated from `requests` (see
`azdo_pipeline.docs`).
"""

from .outcomes import PROVISIONING_OUTCOMES, ApiCall, Outcome, Status, outcomes_table
from .requests import (
    Action,
    License,
    PrincipalRef,
    ProjectAccess,
    ProjectRole,
    Request,
    RequestError,
    TargetRef,
    parse_request,
    request_json_schema,
    validate_request,
)

__all__ = [
    "PROVISIONING_OUTCOMES", "Action", "ApiCall", "License", "Outcome", "PrincipalRef", "ProjectAccess",
    "ProjectRole", "Request", "RequestError", "Status", "TargetRef", "outcomes_table", "parse_request",
    "request_json_schema", "validate_request",
]
