"""Abaco's search: the query language, paging over thousands of executions, and only what
the caller may read (real Redis and S3; no containers)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from jobs.errors import ValidationError
from jobs.search import parse_query
from tests.jwt_users import as_user


def test_the_query_language():
    records = [{"status": "READY", "n": 3, "when": "2026-01-02T00:00:00Z", "ok": True,
                "nested": {"code": 0}},
               {"status": "ERROR", "n": 10, "when": "2026-03-01T00:00:00Z", "ok": False,
                "nested": {"code": 1}, "image": "abaco/echo"}]

    def hits(**args: str) -> list[int]:
        page = parse_query(args, 0, 100).page(records)
        return [r["n"] for r in page["search"]]

    assert hits(status="READY") == [3]
    assert hits(**{"status.neq": "READY"}) == [10]
    assert hits(**{"n.gt": "3"}) == [10] and hits(**{"n.lte": "3"}) == [3]
    assert hits(**{"status.in": '["READY","ERROR"]'}) == [3, 10]
    assert hits(**{"status.nin": "['READY']"}) == [10]
    assert hits(**{"image.like": "^abaco/"}) == [10] and hits(**{"image.nlike": "echo"}) == [3]
    assert hits(**{"when.between": "2026-02-01T00:00:00Z,2026-12-31T00:00:00Z"}) == [10]
    assert hits(ok="true") == [3] and hits(**{"nested.code": "1"}) == [10]
    assert hits(search="error abaco") == [10] and hits(exactsearch="abaco/echo") == [10]
    assert hits(**{"n.gt": "abc"}) == [], "a number against a string matches nothing"
    with pytest.raises(ValidationError) as bad:
        parse_query({"status.in": "READY"}, 0, 10)
    assert bad.value.field == "status.in"
    with pytest.raises(ValidationError):
        parse_query({"image.like": "("}, 0, 10)


def _ok(reply: Any) -> Any:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["result"]


def test_executions_page_over_thousands_and_only_readable(client: FlaskClient):
    alice = as_user("alice")
    mine = _ok(client.post("/actors", json={"image": "abaco-test-echo", "name": "many"},
                           headers=alice))
    other = _ok(client.post("/actors", json={"image": "abaco-test-echo"},
                            headers=as_user("bob")))
    platform = client.application.config["ABACO_PLATFORM"]
    for actor in (mine, other):
        platform.store.update_actor(actor["tenant"] or "DEV", actor["id"], {"status": "READY"})
    sent = set()
    for i in range(2500):
        reply = client.post(f"/actors/{mine['id']}/messages", data={"message": f"m{i}"},
                            headers=alice)
        sent.add(_ok(reply)["executionId"])
    client.post(f"/actors/{other['id']}/messages", data={"message": "x"},
                headers=as_user("bob"))
    seen: list[str] = []
    skip = 0
    while True:
        page = _ok(client.get(f"/actors/search/executions?status=SUBMITTED&skip={skip}"
                              "&limit=700", headers=alice))
        meta = page["_metadata"]
        assert meta["totalCount"] == 2500 and meta["recordsSkipped"] == skip
        assert meta["countReturned"] == len(page["search"]) <= 700
        seen += [e["id"] for e in page["search"]]
        skip += 700
        if skip >= meta["totalCount"]:
            break
    assert len(seen) == len(set(seen)) == 2500 and set(seen) == sent, \
        "every execution once, none of bob's"
    assert all(e["_links"]["self"] for e in page["search"])
    none = _ok(client.get(f"/actors/search/executions?actorId={mine['id']}",
                          headers=as_user("carol")))
    assert none["_metadata"]["totalCount"] == 0, "carol may read none of them"


def test_actors_workers_and_logs_searches(client: FlaskClient):
    alice = as_user("alice")
    ready = _ok(client.post("/actors", json={"image": "abaco-test-echo", "name": "ready-one"},
                            headers=alice))
    _ok(client.post("/actors", json={"image": "abaco-test-echo", "name": "other"},
                    headers=alice))
    platform = client.application.config["ABACO_PLATFORM"]
    platform.store.update_actor("DEV", ready["id"], {"status": "READY"})
    found = _ok(client.get("/actors/search/actors?status=READY", headers=alice))
    assert [a["id"] for a in found["search"]] == [ready["id"]]
    assert _ok(client.get("/actors/search/actors?name.like=^ready",
                          headers=alice))["_metadata"]["totalCount"] == 1
    assert _ok(client.get("/actors/search/workers", headers=alice))["search"] == []
    eid = _ok(client.post(f"/actors/{ready['id']}/messages", data={"message": "x"},
                          headers=alice))["executionId"]
    platform.store.append_log("DEV", ready["id"], eid, b"hello needle world\n")
    logs = _ok(client.get(f"/actors/search/logs?search=needle&actorId={ready['id']}",
                          headers=alice))
    assert [r["executionId"] for r in logs["search"]] == [eid]
    assert logs["search"][0]["_links"]["self"].endswith(f"/executions/{eid}/logs")
    assert _ok(client.get("/actors/search/logs?search=absent",
                          headers=alice))["_metadata"]["totalCount"] == 0
    bad = client.get("/actors/search/things", headers=alice)
    assert bad.status_code == 400 and "things" in bad.get_json()["message"]


def test_hostile_searches_answer_quickly_and_cleanly(client: FlaskClient):
    """Found by an attack round: backtracking regexes stalled the API; nested JSON in .in
    was a 500; one expired log failed a whole logs search."""
    import time

    alice = as_user("alice")
    actor = _ok(client.post("/actors", json={"image": "abaco-test-echo", "name": "a" * 60},
                            headers=alice))
    begun = time.monotonic()
    for pattern in ("^(.*.*)*%23$", "^(a%2B)%2B$", "(x%2Bx%2B)%2By"):
        for field in ("name", "_links.self", "id"):
            _ok(client.get(f"/actors/search/actors?{field}.like={pattern}", headers=alice))
    assert time.monotonic() - begun < 5, "linear-time matching"
    nested = client.get("/actors/search/actors?status.in=" + "[" * 5000, headers=alice)
    assert nested.status_code == 400
    platform = client.application.config["ABACO_PLATFORM"]
    platform.store.update_actor("DEV", actor["id"], {"status": "READY"})
    kept, expired = (_ok(client.post(f"/actors/{actor['id']}/messages",
                                     data={"message": m}, headers=alice))["executionId"]
                     for m in ("k", "e"))
    for eid in (kept, expired):
        platform.store.append_log("DEV", actor["id"], eid, b"needle\n")
    platform.store.r.hset(platform.store.keys.execution("DEV", actor["id"], expired),
                          "logs_expired", '"2026-01-01T00:00:00.000000Z"')
    found = _ok(client.get("/actors/search/logs?search=needle", headers=alice))
    assert [r["executionId"] for r in found["search"]] == [kept]
