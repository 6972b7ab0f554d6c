"""Outcome of one provisioning request, and the Arrow schema of the `provisioning_outcomes` table.

Every request ends with exactly one current outcome. `pending` (a Microsoft Graph change Azure DevOps
has not shown yet) is the only status that later changes: to `confirmed` once Azure DevOps shows the
membership, or to `unconfirmed` after the configured wait (see `provisioning.confirm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa

from ..schemas import TS, col, table_schema
from .requests import Action, Request


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    ALREADY_DONE = "already_done"
    SKIPPED_ENTRA_MANAGED = "skipped_entra_managed"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNCONFIRMED = "unconfirmed"
    REFUSED = "refused"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """False only for `pending`: a later check settles it."""
        return self is not Status.PENDING

    @property
    def is_success(self) -> bool:
        return self in (Status.SUCCEEDED, Status.ALREADY_DONE, Status.SKIPPED_ENTRA_MANAGED, Status.PENDING,
                        Status.CONFIRMED)


STATUS_MEANINGS: dict[Status, str] = {
    Status.SUCCEEDED: "The change was made in Azure DevOps.",
    Status.ALREADY_DONE: "Nothing to do: the membership or account was already as requested (checked first).",
    Status.SKIPPED_ENTRA_MANAGED: "Entra-managed group (`aadgp.`) with PAT auth or `entra_group_provisioning` "
                                  "off: accepted as a success without any API call; change it in Entra.",
    Status.PENDING: "Changed in Microsoft Entra through Microsoft Graph; Azure DevOps has not shown it yet "
                    "(it can take up to an hour).",
    Status.CONFIRMED: "A pending Entra change that Azure DevOps now shows.",
    Status.UNCONFIRMED: "A pending Entra change Azure DevOps still did not show after the configured wait.",
    Status.REFUSED: "Not carried out by design (deprovisioning: remove accounts in Azure DevOps itself).",
    Status.FAILED: "Not carried out; `message` names the cause and the fix.",
}


@dataclass(frozen=True)
class ApiCall:
    """One HTTP call made (or, in a dry run, that would be made)."""

    method: str
    url: str  # no query secrets: URLs carry none (tokens go in headers)
    status: int | None = None  # None: planned only (dry run) or no response (network failure)

    def __str__(self) -> str:
        return f"{self.method} {self.url}" + (f" -> {self.status}" if self.status is not None else "")

    @classmethod
    def parse(cls, text: str) -> ApiCall:
        """The inverse of str()."""
        call, sep, status = text.rpartition(" -> ")
        if not sep or not status.isdigit():
            call, status = text, ""
        method, _, url = call.partition(" ")
        return cls(method, url, int(status) if status else None)


@dataclass(frozen=True)
class Outcome:
    request_id: str
    organization: str
    action: Action
    status: Status
    message: str
    principal: str  # as requested
    target: str | None = None  # as requested
    principal_descriptor: str | None = None  # resolved
    target_descriptor: str | None = None  # resolved (a team's backing group)
    api_calls: tuple[ApiCall, ...] = ()
    dry_run: bool = False
    requested_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    details: dict[str, str] = field(default_factory=dict)  # e.g. entra_group_id, entra_member_id

    @classmethod
    def for_request(cls, request: Request, status: Status, message: str, **kw: Any) -> Outcome:
        fields: dict[str, Any] = {"dry_run": request.dry_run, "requested_at": request.requested_at, **kw}
        return cls(request_id=request.id, organization=request.organization, action=request.action,
                   status=status, message=message, principal=str(request.principal),
                   target=str(request.target) if request.target is not None else None, **fields)

    def settled(self, status: Status, message: str, at: datetime, calls: Sequence[ApiCall] = ()) -> Outcome:
        """This outcome moved on from `pending` (to confirmed / unconfirmed)."""
        return replace(self, status=status, message=message, finished_at=at, api_calls=self.api_calls + tuple(calls))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Outcome:
        """An outcome back from its `provisioning_outcomes` row (e.g. a pending one to re-check)."""
        details = {k: str(row[k]) for k in ("entra_group_id", "entra_member_id") if row.get(k)}
        return cls(request_id=str(row["request_id"]), organization=str(row["organization"]),
                   action=Action(row["action"]), status=Status(row["status"]), message=str(row["message"]),
                   principal=str(row["principal"]), target=row.get("target"),
                   principal_descriptor=row.get("principal_descriptor"), target_descriptor=row.get("target_descriptor"),
                   api_calls=tuple(ApiCall.parse(c) for c in row.get("api_calls") or ()),
                   dry_run=bool(row.get("dry_run")), requested_at=_ts(row.get("requested_at")),
                   started_at=_ts(row.get("started_at")), finished_at=_ts(row.get("finished_at")), details=details)

    def to_row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "organization": self.organization, "action": self.action.value,
            "principal": self.principal, "principal_descriptor": self.principal_descriptor,
            "target": self.target, "target_descriptor": self.target_descriptor, "status": self.status.value,
            "message": self.message, "api_calls": [str(c) for c in self.api_calls],
            "api_call_count": sum(1 for c in self.api_calls if c.status is not None),
            "dry_run": self.dry_run, "requested_at": self.requested_at, "started_at": self.started_at,
            "finished_at": self.finished_at,
            "entra_group_id": self.details.get("entra_group_id"),
            "entra_member_id": self.details.get("entra_member_id"),
        }


PROVISIONING_OUTCOMES = table_schema(
    "One current row per provisioning request: what was asked, what happened, and the API calls made. "
    "A `pending` row (Entra change through Microsoft Graph) is later replaced by `confirmed` or `unconfirmed`.",
    ["request_id"],
    col("request_id", pa.string(), "The request's id.", nullable=False),
    col("organization", pa.string(), "Organization name.", nullable=False),
    col("action", pa.string(), "create_account, grant, revoke or deprovision_account.", nullable=False),
    col("principal", pa.string(), "Principal as requested (name, e-mail or descriptor).", nullable=False),
    col("principal_descriptor", pa.string(), "Resolved Graph descriptor of the principal; null when unresolved."),
    col("target", pa.string(), "Group or team as requested; null for account actions."),
    col("target_descriptor", pa.string(), "Resolved group descriptor (a team's backing group); null when "
        "unresolved or for account actions."),
    col("status", pa.string(), "; ".join(f"`{s.value}`: {m}" for s, m in STATUS_MEANINGS.items()), nullable=False),
    col("message", pa.string(), "Plain-words explanation; for `failed`, the cause and the fix.", nullable=False),
    col("api_calls", pa.list_(pa.string()), "Calls made, as `METHOD url -> status`; in a dry run the calls it "
        "would make (no status).", nullable=False),
    col("api_call_count", pa.int32(), "Number of HTTP calls actually made (0 for dry runs, refusals and "
        "Entra no-ops).", nullable=False),
    col("dry_run", pa.bool_(), "True when nothing was changed on purpose.", nullable=False),
    col("requested_at", TS, "When the request was made (from the request, else when it was picked up)."),
    col("started_at", TS, "When carrying it out started."),
    col("finished_at", TS, "When the current status was reached."),
    col("entra_group_id", pa.string(), "Entra object id of the group, for Microsoft Graph changes."),
    col("entra_member_id", pa.string(), "Entra object id of the member, for Microsoft Graph changes."),
)


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def outcomes_table(outcomes: Iterable[Outcome]) -> pa.Table:
    rows = [o.to_row() for o in outcomes]
    return pa.Table.from_pylist(rows, schema=PROVISIONING_OUTCOMES)


__all__ = ["PROVISIONING_OUTCOMES", "STATUS_MEANINGS", "ApiCall", "Outcome", "Status", "outcomes_table"]
