"""Order keys: every request of one principal runs in arrival order, however the principal is named."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from azdo_pipeline.provisioning.flow import RequestParser, parse_request, request_parser
from azdo_pipeline.store import Store

ORG = "contoso"
ALICE = "aad.YWxpY2U"


def _publish_users(store: Store, snapshot: str, users: list[dict[str, str]]) -> None:
    draft = store.begin(ORG, snapshot)
    draft.write_table("users", pa.Table.from_pylist(users))
    draft.commit()


def _doc(rid: str, action: str, principal: str, **more: object) -> bytes:
    return json.dumps({"id": rid, "organization": ORG, "action": action, "principal": principal, **more}).encode()


GRANT = {"target": "[Alpha]\\Readers"}


def test_one_person_named_by_mail_and_by_descriptor_shares_one_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    _publish_users(store, "20260101T000000Z", [{"descriptor": ALICE, "principal_name": "alice@contoso.com",
                                                 "mail_address": "Alice.Smith@contoso.com"}])
    parse = RequestParser(store)
    by_name = parse(_doc("r1", "grant", "alice@contoso.com", **GRANT))
    by_mail = parse(_doc("r2", "revoke", "alice.smith@CONTOSO.com", **GRANT))
    by_descriptor = parse(_doc("r3", "grant", ALICE, target="[Alpha]\\Contributors"))
    assert by_name.order_key == by_mail.order_key == by_descriptor.order_key == f"{ORG}|{ALICE}"
    # Without the synced tables the keys are as written: the three would not be ordered.
    plain = {parse_request(_doc(r, "grant", p, **GRANT)).order_key
             for r, p in (("a", "alice@contoso.com"), ("b", ALICE))}
    assert len(plain) == 2


def test_a_grant_after_create_account_waits_for_it(tmp_path: Path) -> None:
    parse = RequestParser(Store(tmp_path / "data"))  # nothing synced yet
    create = parse(_doc("c1", "create_account", "bob@contoso.com", license="stakeholder"))
    grant = parse(_doc("g1", "grant", "Bob@Contoso.com", **GRANT))
    other = parse(_doc("g2", "grant", "carol@contoso.com", **GRANT))
    assert create.order_key == grant.order_key != other.order_key


def test_a_new_snapshot_refreshes_the_directory(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    _publish_users(store, "20260101T000000Z", [{"descriptor": ALICE, "principal_name": "alice@contoso.com"}])
    parse = request_parser(store)  # a sensor tick
    bob = "aad.Ym9i"
    assert parse(_doc("r1", "grant", "bob@contoso.com", **GRANT)).order_key == f"{ORG}|bob@contoso.com"
    _publish_users(store, "20260102T000000Z", [{"descriptor": ALICE, "principal_name": "alice@contoso.com"},
                                               {"descriptor": bob, "principal_name": "bob@contoso.com"}])
    parse = request_parser(store)  # the next tick sees the new snapshot
    assert parse(_doc("r2", "grant", "bob@contoso.com", **GRANT)).order_key == f"{ORG}|{bob}"
