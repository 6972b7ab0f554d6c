"""Simulator IMS identities: shapes, lookups, Direct/Expanded membership against the state, batch, limits."""

from __future__ import annotations

import uuid

import pytest
from azdo_sim import routes_identities
from azdo_sim.state import OrgState

V = "api-version=7.1"
IDS = "/fabrikam/_apis/identities"


@pytest.fixture
def vssps(tiny, asgi_client_for):
    return asgi_client_for(tiny.world, tiny.pat, base_url="https://vssps.dev.azure.com")


def closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        nxt = []
        for n in frontier:
            for m in edges.get(n, ()):
                if m not in seen and m != start:
                    seen.add(m)
                    nxt.append(m)
        frontier = nxt
    return seen


def legacy(org: OrgState, descriptors) -> set[str]:
    return {org.identities[d].identity_descriptor for d in descriptors}


def test_shape_matches_spec_example(vssps, tiny_org):
    user = next(u for u in tiny_org.users() if u.subject_type == "aad")
    pcvu = tiny_org.identities[tiny_org.org_groups["project_collection_valid_users"]]
    r = vssps.get(f"{IDS}?{V}&subjectDescriptors={user.descriptor},{pcvu.descriptor}&queryMembership=None")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2
    u, g = body["value"]
    assert list(u) == ["id", "descriptor", "subjectDescriptor", "providerDisplayName", "isActive", "members",
                       "memberOf", "memberIds", "properties", "resourceVersion", "metaTypeId"]
    assert u["id"] == user.storage_key and u["descriptor"] == user.identity_descriptor
    assert u["subjectDescriptor"] == user.descriptor and u["providerDisplayName"] == user.display_name
    assert u["members"] == u["memberOf"] == u["memberIds"] == []  # queryMembership=None
    assert u["properties"]["SchemaClassName"] == {"$type": "System.String", "$value": "User"}
    assert u["properties"]["Account"]["$value"] == user.principal_name
    assert u["properties"]["http://schemas.microsoft.com/identity/claims/objectidentifier"]["$value"] == \
        user.origin_id
    assert u["metaTypeId"] in (0, 1) and "isContainer" not in u
    assert g["isContainer"] is True and g["metaTypeId"] == 255
    assert g["providerDisplayName"] == pcvu.principal_name
    assert g["properties"]["SchemaClassName"]["$value"] == "Group"
    assert g["properties"]["SpecialType"]["$value"] == "EveryoneApplicationGroup"
    assert g["properties"]["ScopeId"] == {"$type": "System.Guid", "$value": tiny_org.id}


def test_lookup_by_ids_descriptors_and_nulls(vssps, tiny_org):
    idents = list(tiny_org.identities.values())[:4]
    ghost = str(uuid.uuid4())
    keys = [i.storage_key for i in idents[:2]] + [ghost] + [idents[2].storage_key.replace("-", "")]
    r = vssps.get(f"{IDS}?{V}&identityIds={','.join(keys)}")
    assert r.status_code == 200
    value = r.json()["value"]
    assert r.json()["count"] == 4
    assert [v and v["id"] for v in value] == [idents[0].storage_key, idents[1].storage_key, None,
                                               idents[2].storage_key]
    legacy_keys = [idents[3].identity_descriptor.upper(), "Microsoft.TeamFoundation.Identity;S-1-9-0"]
    r = vssps.get(IDS, params={"api-version": "7.1", "descriptors": ",".join(legacy_keys)})
    assert [v and v["subjectDescriptor"] for v in r.json()["value"]] == [idents[3].descriptor, None]
    r = vssps.get(f"{IDS}?{V}&identityIds=nope")
    assert r.status_code == 400
    assert vssps.get(f"{IDS}?{V}").status_code == 400  # nothing to look up
    both = f"{IDS}?{V}&identityIds={idents[0].storage_key}&subjectDescriptors={idents[0].descriptor}"
    assert vssps.get(both).status_code == 400


def test_direct_membership_equals_state_edges(vssps, tiny_org):
    keys = [i.storage_key for i in tiny_org.identities.values()]
    for chunk in range(0, len(keys), 20):
        ids = ",".join(keys[chunk:chunk + 20])
        for ident in vssps.get(f"{IDS}?{V}&identityIds={ids}&queryMembership=Direct").json()["value"]:
            d = ident["subjectDescriptor"]
            assert set(ident["members"]) == legacy(tiny_org, tiny_org.members(d))
            assert set(ident["memberIds"]) == {tiny_org.identities[m].storage_key for m in tiny_org.members(d)}
            assert set(ident["memberOf"]) == legacy(tiny_org, tiny_org.member_of(d))


def test_expanded_membership_equals_transitive_closure(vssps, tiny_org):
    checked_nested = False
    for d in list(tiny_org.identities):
        ident = vssps.get(f"{IDS}?{V}&subjectDescriptors={d}&queryMembership=Expanded").json()["value"][0]
        down, up = closure(d, tiny_org.down), closure(d, tiny_org.up)
        assert set(ident["members"]) == legacy(tiny_org, down)
        assert set(ident["memberIds"]) == {tiny_org.identities[m].storage_key for m in down}
        assert set(ident["memberOf"]) == legacy(tiny_org, up)
        checked_nested |= len(up) > len(tiny_org.member_of(d))
    assert checked_nested  # the world has nesting, so Expanded really differs from Direct


def test_expanded_is_cycle_safe(vssps, tiny_org):
    a = tiny_org.create_group(display_name="Cycle A", audit=False)
    b = tiny_org.create_group(display_name="Cycle B", audit=False)
    user = tiny_org.identities[tiny_org.user_order[0]]
    tiny_org.add_membership(a.descriptor, b.descriptor, audit=False)
    tiny_org.add_membership(b.descriptor, user.descriptor, audit=False)
    tiny_org._link(b.descriptor, a.descriptor)  # a cycle the API would refuse; data can still hold one
    r = vssps.get(f"{IDS}?{V}&subjectDescriptors={a.descriptor}&queryMembership=Expanded")
    ident = r.json()["value"][0]
    assert set(ident["members"]) == {b.identity_descriptor, user.identity_descriptor}
    assert set(ident["memberOf"]) == {b.identity_descriptor}


def test_identity_batch(vssps, tiny_org):
    groups = [g for g in tiny_org.groups()][:3]
    r = vssps.post(f"/fabrikam/_apis/identitybatch?{V}",
                   json={"subjectDescriptors": [g.descriptor for g in groups] + ["aad.bm9uZQ"],
                         "queryMembership": "Direct"})
    assert r.status_code == 200
    value = r.json()["value"]
    assert [v and v["subjectDescriptor"] for v in value] == [g.descriptor for g in groups] + [None]
    for g, v in zip(groups, value, strict=False):
        assert set(v["members"]) == legacy(tiny_org, tiny_org.members(g.descriptor))
    r = vssps.post(f"/fabrikam/_apis/identitybatch?{V}",
                   json={"descriptors": [groups[0].identity_descriptor], "queryMembership": "None"})
    assert r.json()["value"][0]["id"] == groups[0].storage_key
    r = vssps.post(f"/fabrikam/_apis/identitybatch?{V}",
                   json={"identityIds": [groups[0].storage_key] * (routes_identities.IDENTITY_BATCH_MAX + 1)})
    assert r.status_code == 400 and r.json()["typeKey"] == "TooManyRequestedItemsException"
    assert vssps.post("/fabrikam/_apis/identitybatch", json={"identityIds": []}).status_code == 400


def test_query_string_limit_and_search(vssps, tiny_org):
    keys = [str(uuid.uuid4()) for _ in range(60)]  # 60 GUIDs > IIS's 2048-character query string
    r = vssps.get(f"{IDS}?{V}&identityIds={','.join(keys)}")
    assert r.status_code == 404 and r.text == "Page not found."
    r = vssps.get(f"{IDS}?{V}&identityIds={','.join(keys[:50])}")  # the .NET client's chunk size fits
    assert r.status_code == 200 and r.json()["value"] == [None] * 50
    r = vssps.get(IDS, params={"api-version": "7.1", "searchFilter": "General",
                               "filterValue": "Project Collection Valid Users", "queryMembership": "None"})
    assert [v["subjectDescriptor"] for v in r.json()["value"]] == \
        [tiny_org.org_groups["project_collection_valid_users"]]
    user = next(u for u in tiny_org.users() if u.subject_type == "aad")
    r = vssps.get(IDS, params={"api-version": "7.1", "searchFilter": "MailAddress", "filterValue": user.mail_address})
    assert user.storage_key in [v["id"] for v in r.json()["value"]]
    r = vssps.get(f"{IDS}?{V}&identityIds={user.storage_key}&queryMembership=Sideways")
    assert r.status_code == 400
