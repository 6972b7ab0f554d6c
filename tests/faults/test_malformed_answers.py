"""A 200 answer that is not what its route returns is read again and then fails the run naming the
route and what was wrong; never an empty or partial table published as a success (issue 9).

Each case scripts the fault through the simulator (azdo_sim.faults rules: an exact body and content
type, or the route's real JSON altered) and runs a full sync over real HTTPS (harness.run_case).
`count: -1` repeats the fault on every read (the run must fail clearly); `count: 1` damages one
answer only (the read again must give a correct sync).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline.client.errors import AuthenticationError, UnexpectedResponseError

from .harness import Case, rule, run_case

PROJECTS = r"/_apis/projects$"
USERS = r"/vssps/[^/]+/_apis/graph/users$"
GROUPS = r"/vssps/[^/]+/_apis/graph/groups$"
ENTS = r"/vsaex/[^/]+/_apis/userentitlements$"
BATCH = r"/_apis/identitybatch$"
MALFORMED = UnexpectedResponseError
PROXY_HINT = "proxy"

CASES = [
    # ---- projects served as something else than a JSON list of projects
    Case("projects as valid JSON with text/plain",
         [rule(PROJECTS, status=200, body='{"count": 0, "value": []}', content_type="text/plain; charset=utf-8")],
         "failure", ("GET projects", "content type text/plain, expected application/json", PROXY_HINT), MALFORMED),
    Case("projects as XML",
         [rule(PROJECTS, status=200, body="<Projects><Project id='1'/></Projects>", content_type="application/xml")],
         "failure", ("GET projects", "content type application/xml"), MALFORMED),
    Case("projects as an empty body",
         [rule(PROJECTS, status=200, body="", content_type="application/json")],
         "failure", ("GET projects", "an empty body"), MALFORMED),
    Case("projects as JSON null",
         [rule(PROJECTS, status=200, body="null", content_type="application/json; charset=utf-8")],
         "failure", ("GET projects", "the body is JSON null, expected an object holding projects"), MALFORMED),
    Case("projects as a bare JSON list",
         [rule(PROJECTS, status=200, body="[]", content_type="application/json")],
         "failure", ("GET projects", "the body is JSON array"), MALFORMED),
    Case("projects without value", [rule(PROJECTS, mutate={"remove_keys": ["value"]})],
         "failure", ("GET projects", "no `value` list"), MALFORMED),
    Case("a project id of another type", [rule(PROJECTS, mutate={"set_item": {"index": 0, "key": "id", "value": 7}})],
         "failure", ("GET projects", "item 0.id is integer, expected a string"), MALFORMED),
    Case("a project time that is no timestamp",
         [rule(PROJECTS, mutate={"set_item": {"index": 1, "key": "lastUpdateTime", "value": "yesterday"}})],
         "failure", ("GET projects", "item 1.lastUpdateTime is string ('yesterday'), expected a timestamp"), MALFORMED),
    Case("projects as text/plain once, then right",
         [rule(PROJECTS, count=1, status=200, body='{"count": 0, "value": []}', content_type="text/plain")],
         "correct"),
    Case("projects as HTML (a sign-in or proxy page)",
         [rule(PROJECTS, status=200, body="<html><body>Sign in</body></html>", content_type="text/html")],
         "failure", ("GET projects", "sign-in page"), AuthenticationError),
    # ---- Graph users (an Arrow-decoded page)
    Case("a Graph users page without value", [rule(USERS, mutate={"remove_keys": ["value"]})],
         "failure", ("GET graph/users", "no `value` list"), MALFORMED),
    Case("a Graph users page whose value is an object", [rule(USERS, mutate={"set": {"value": {"a": 1}}})],
         "failure", ("GET graph/users", "`value` is object, expected an array"), MALFORMED),
    Case("a Graph user without descriptor",
         [rule(USERS, mutate={"set_item": {"index": 2, "key": "descriptor", "value": None}})],
         "failure", ("GET graph/users", "item 2 has no `descriptor`"), MALFORMED),
    Case("a Graph user's name of another type",
         [rule(USERS, mutate={"set_item": {"index": 0, "key": "displayName", "value": 42}})],
         "failure", ("GET graph/users", "item 0.displayName is integer, expected a string"), MALFORMED),
    # The read again delays the users stream: team member display names come from it (issue 9's race).
    Case("a Graph users page without value once, then right",
         [rule(USERS, count=1, mutate={"remove_keys": ["value"]})], "correct"),
    Case("Graph users as text/plain", [rule(USERS, status=200, body='{"value": []}', content_type="text/plain")],
         "failure", ("GET graph/users", "content type text/plain"), MALFORMED),
    # ---- user entitlements (Arrow-decoded, read from both ends)
    Case("entitlements without members or items", [rule(ENTS, mutate={"remove_keys": ["members", "items"]})],
         "failure", ("GET userentitlements", "no `members` list"), MALFORMED),
    Case("entitlements totalCount as a string", [rule(ENTS, mutate={"set": {"totalCount": "10"}})],
         "failure", ("GET userentitlements", "`totalCount` is string, expected an integer"), MALFORMED),
    Case("an entitlement without its user",
         [rule(ENTS, mutate={"set_item": {"list": "members", "index": 0, "key": "user", "value": None}})],
         "failure", ("GET userentitlements", "item 0 has no `user.descriptor`"), MALFORMED),
    Case("entitlements as JSON null", [rule(ENTS, status=200, body="null", content_type="application/json")],
         "failure", ("GET userentitlements", "JSON null"), MALFORMED),
    # ---- groups, teams, service principals, ACLs, accounts
    Case("groups value a string", [rule(GROUPS, mutate={"set": {"value": "none"}})],
         "failure", ("GET graph/groups", "`value` is string, expected an array of Graph groups"), MALFORMED),
    Case("a group that is not an object", [rule(GROUPS, mutate={"set": {"value": [1, 2]}})],
         "failure", ("GET graph/groups", "item 0 of Graph groups is integer, expected an object"), MALFORMED),
    Case("a team id of another type", [rule(r"/_apis/teams$", mutate={"set_item": {"index": 0, "key": "id",
                                                                                 "value": ["x"]}})],
         "failure", ("GET teams", "item 0.id is array, expected a string"), MALFORMED),
    Case("service principals without value",
         [rule(r"/_apis/graph/serviceprincipals$", mutate={"remove_keys": ["value"]})],
         "failure", ("GET graph/serviceprincipals", "no `value` list"), MALFORMED),
    Case("access control lists as an empty body",
         [rule(r"/_apis/accesscontrollists/", status=200, body="", content_type="application/json")],
         "failure", ("GET accesscontrollists", "an empty body"), MALFORMED),
    Case("an account without its id",
         [rule(r"/_apis/accounts$", mutate={"set_item": {"index": 0, "key": "accountId", "value": None}})],
         "failure", ("GET accounts", "item 0 has no `accountId`"), MALFORMED),
    # ---- batched identity reads (memberships, member ids, team administrators)
    Case("an identity batch without value", [rule(BATCH, mutate={"remove_keys": ["value"]})],
         "failure", ("POST identitybatch", "no `value` list"), MALFORMED),
    Case("an identity batch short of one key", [rule(BATCH, mutate={"drop_item": {"index": 0}})],
         "failure", ("POST identitybatch", "identities for", "keys asked"), MALFORMED),
    Case("an identity batch short of one key once, then right",
         [rule(BATCH, count=1, mutate={"drop_item": {"index": 0}})], "correct"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_answer(fault_server: SimulatorServer, tmp_path: Path, case: Case) -> None:
    run_case(fault_server, tmp_path, case)
