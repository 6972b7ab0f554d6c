"""Any JSON a route may answer with: the page is used only when it is the route's shape, else the
read fails with UnexpectedResponseError naming the route; never a bare AttributeError, TypeError or
KeyError from the client (client/core.py, graph.py) or the row builders (sync/rows.py) (issue 9).

Hypothesis builds bodies near the real shapes (right keys, wrong types, missing fields, nulls) and
far from them (any JSON); each is served as every page of the route, and the rows are built as the
sync builds them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.client import ClientSettings
from azdo_pipeline.client.errors import UnexpectedResponseError
from azdo_pipeline.sync import rows

from .test_client_support import FakeClock, FakeService, collect, connect, json_response, run

PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=6) | st.just("2024-05-01T10:00:00Z") | st.just("yesterday")
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=3), max_leaves=8)


def _item(keys: list[str]) -> st.SearchStrategy[Any]:
    near = st.fixed_dictionaries({}, optional={k: _leaf | _json for k in keys})
    return near | _json


def _body(keys: list[str]) -> st.SearchStrategy[Any]:
    page = st.fixed_dictionaries({}, optional={"count": _leaf, "value": st.lists(_item(keys), max_size=4) | _json})
    return page | _json


PROJECT_KEYS = ["id", "name", "description", "state", "visibility", "revision", "lastUpdateTime"]
GROUP_KEYS = ["descriptor", "displayName", "principalName", "description", "origin", "originId", "domain"]
TEAM_KEYS = ["id", "name", "description", "projectId", "projectName"]


def _served(path: str, body: Any, read: Any, build: Any) -> None:
    svc = FakeService()
    svc.on("GET", path, lambda r: json_response(body))

    async def go() -> None:
        async with await connect(svc, clock=FakeClock(), settings=ClientSettings(damaged_retries=0)) as c:
            try:
                pages = await collect(read(c))
            except UnexpectedResponseError as exc:
                assert exc.endpoint and exc.endpoint in str(exc)
                return
            for page in pages:
                for item in page:
                    build(item)

    run(go())


@PROFILE
@given(_body(PROJECT_KEYS))
def test_projects_any_body(body: Any) -> None:
    _served("/_apis/projects", body, lambda c: c.core.iter_projects(), rows.project_row)


@PROFILE
@given(_body(GROUP_KEYS))
def test_groups_any_body(body: Any) -> None:
    _served("/_apis/graph/groups", body, lambda c: c.graph.iter_groups(), lambda g: rows.group_row(g, set()))


@PROFILE
@given(_body(TEAM_KEYS))
def test_teams_any_body(body: Any) -> None:
    _served("/_apis/teams", body, lambda c: c.core.iter_teams(), rows.team_row)


@PROFILE
@given(_body(["descriptor", "displayName", "applicationId", "originId", "domain"]))
def test_service_principals_any_body(body: Any) -> None:
    _served("/_apis/graph/serviceprincipals", body, lambda c: c.graph.iter_service_principals(),
            rows.service_principal_row)
