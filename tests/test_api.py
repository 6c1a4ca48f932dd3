"""The REST API on real Redis, S3 and OpenBao (no containers run here)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from jobs.settings import Settings


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings.replace(max_body_bytes=4096)).test_client()


def _ok(reply: Any) -> Any:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["status"] == "success" and "version" in body
    return body["result"]


def _error(reply: Any, status: int) -> str:
    assert reply.status_code == status, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["status"] == "error" and body["message"]
    return str(body["message"])


def _actor(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    return _ok(client.post("/actors", json={"image": "abaco-test-echo", **fields}))


def test_actor_crud_in_camel_case(client: FlaskClient):
    actor = _actor(client, name="foo", defaultEnvironment={"my_var": "1"}, maxRunTime=30)
    assert actor["status"] == "SUBMITTED" and actor["revision"] == 1
    assert actor["defaultEnvironment"] == {"my_var": "1"}
    assert actor["maxRunTime"] == 30 and actor["stateless"] is True
    assert actor["_links"]["executions"].endswith(f"/actors/{actor['id']}/executions")
    assert [a["id"] for a in _ok(client.get("/actors"))] == [actor["id"]]
    assert _ok(client.get(f"/actors/v2/{actor['id']}"))["name"] == "foo"
    updated = _ok(client.put(f"/actors/{actor['id']}", json={"image": "other", "name": "bar"}))
    assert updated["revision"] == 2 and updated["status"] == "SUBMITTED"
    assert updated["defaultEnvironment"] == {"my_var": "1"}
    forced = _ok(client.put(f"/actors/{actor['id']}", data={"force": "true"}))
    assert forced["revision"] == 3 and forced["image"] == "other"
    _ok(client.delete(f"/actors/{actor['id']}"))
    _error(client.get(f"/actors/{actor['id']}"), 404)


def test_form_encoded_and_snake_case_requests(client: FlaskClient, settings: Settings):
    actor = _ok(client.post("/actors", data={"image": "img", "use_container_uid": "true",
                                              "stateless": "false"}))
    assert actor["useContainerUid"] is True and actor["stateless"] is False
    snake = create_app(settings.replace(case="snake")).test_client()
    assert "use_container_uid" in _ok(snake.get(f"/actors/{actor['id']}"))


def test_snake_case_errors_name_fields_in_snake_case(settings: Settings):
    snake = create_app(settings.replace(case="snake")).test_client()
    reply = snake.post("/actors", json={"image": "x", "maxWorkers": "many"})
    assert _error(reply, 400).startswith("max_workers:")
    assert reply.get_json()["result"]["field"] == "max_workers"
    env = _error(snake.post("/actors", json={"image": "x", "defaultEnvironment": {
        "BAD-NAME": "1"}}), 400)
    assert env.startswith("default_environment"), env
    assert "BAD-NAME" in env or "defaultEnvironment" not in env


@pytest.mark.parametrize("body, field", [
    ({}, "image"),
    ({"image": 5}, "image"),
    ({"image": "x", "stateless": "maybe"}, "stateless"),
    ({"image": "x", "maxWorkers": "many"}, "maxWorkers"),
    ({"image": "x", "defaultEnvironment": ["a"]}, "defaultEnvironment"),
    ({"image": "x", "memLimit": "lots"}, "memLimit"),
    ({"image": "x", "colour": "red"}, "colour"),
    ({"image": "x", "stateless": False, "maxWorkers": 3}, "maxWorkers"),
])
def test_bad_actor_input_is_a_400_naming_the_field(client: FlaskClient, body, field):
    message = _error(client.post("/actors", json=body), 400)
    assert message.startswith(field)


def test_messages_in_every_form(client: FlaskClient, settings: Settings):
    actor = _actor(client)
    path = f"/actors/{actor['id']}/messages"
    sent = _ok(client.post(path + "?color=red&_abaco_synchronous=false",
                           data={"message": "hello"}))
    assert sent["msg"] == "hello" and sent["executionId"]
    assert sent["_links"]["self"].endswith(f"/executions/{sent['executionId']}")
    as_json = _ok(client.post(path, json={"message": "hi"}))
    whole = _ok(client.post(path, json={"a": 1}))
    binary = _ok(client.post(path, data=b"\x00\xff",
                             content_type="application/octet-stream"))
    assert _ok(client.get(path)) == {"messages": 4}
    platform = client.application.config["ABACO_PLATFORM"]
    tenant = settings.default_tenant
    first = platform.store.get_execution(tenant, actor["id"], sent["executionId"])
    assert first["env"] == {"color": "red"}, "reserved parameters must not leak"
    assert platform.store.get_execution(tenant, actor["id"], as_json["executionId"])[
        "content_type"] == "str"
    assert platform.store.get_execution(tenant, actor["id"], whole["executionId"])[
        "msg"] == {"a": 1}
    assert platform.store.get_binary(tenant, actor["id"], binary["executionId"]) == b"\x00\xff"
    assert _ok(client.delete(path))["purged"] == 4
    assert _ok(client.get(path)) == {"messages": 0}
    execution = _ok(client.get(f"/actors/{actor['id']}/executions/{sent['executionId']}"))
    assert execution["status"] == "ERROR" and "purged" in execution["statusMessage"]


def test_message_errors(client: FlaskClient):
    actor = _actor(client)
    path = f"/actors/{actor['id']}/messages"
    assert _error(client.post(path, data={}), 400).startswith("message")
    assert _error(client.post(path + "?bad-name=1", data={"message": "m"}), 400).startswith(
        "bad-name")
    _error(client.post("/actors/nope/messages", data={"message": "m"}), 404)
    # what no container could ever start with, refused before it is queued:
    assert _error(client.post(path, data={"message": "a\x00b"}), 400).startswith("message")
    assert _error(client.post(path + "?FOO=a%00b", data={"message": "m"}), 400).startswith(
        "FOO")
    assert _error(client.post(path, json={"message": "a\x00b"}), 400).startswith("message")
    assert _ok(client.get(path)) == {"messages": 0}


def test_json_that_is_too_deep_or_not_json_is_a_400(client: FlaskClient):
    actor = _actor(client)
    path = f"/actors/{actor['id']}/messages"
    for body in ("[" * 1100 + "]" * 1100, "[" * 1050 + "{}" + "]" * 1050,
                 '{"v": NaN}', '{"w": Infinity}'):
        reply = client.post(path, data=body, content_type="application/json")
        assert reply.status_code == 400, body[:20]
        assert reply.get_json()["message"].startswith("body")


def test_executions_list_and_detail(client: FlaskClient):
    actor = _actor(client)
    sent = [_ok(client.post(f"/actors/{actor['id']}/messages", data={"message": str(i)}))
            for i in range(3)]
    listing = _ok(client.get(f"/actors/{actor['id']}/executions"))
    assert listing["totalExecutions"] == 3 and listing["actorId"] == actor["id"]
    assert {e["id"] for e in listing["executions"]} == {s["executionId"] for s in sent}
    page = _ok(client.get(f"/actors/{actor['id']}/executions?offset=1&limit=1"))
    assert len(page["executions"]) == 1 and page["totalExecutions"] == 3
    one = _ok(client.get(f"/actors/{actor['id']}/executions/{sent[0]['executionId']}"))
    assert one["status"] == "SUBMITTED" and one["executor"] == "anonymous"
    assert one["_links"]["logs"].endswith("/logs")
    assert _ok(client.get(one["_links"]["logs"].split("8000", 1)[-1]))["logs"] == ""
    _error(client.get(f"/actors/{actor['id']}/executions/nope"), 404)
    _error(client.get(f"/actors/{actor['id']}/executions?limit=zero"), 400)


def test_state_only_on_stateful_actors(client: FlaskClient):
    stateless = _actor(client)
    assert _error(client.post(f"/actors/{stateless['id']}/state", json={"a": 1}),
                  404) == "actor is stateless"
    stateful = _actor(client, stateless=False)
    _ok(client.post(f"/actors/{stateful['id']}/state", json={"count": 1}))
    assert _ok(client.get(f"/actors/{stateful['id']}/state"))["state"] == {"count": 1}


def test_wrong_method_unknown_route_and_oversized_body(client: FlaskClient):
    assert "method" in _error(client.patch("/actors"), 405)
    _error(client.get("/nowhere"), 404)
    assert "too large" in _error(client.post("/actors", json={"image": "x" * 5000}), 413)


def test_cors_and_preflight(client: FlaskClient, settings: Settings):
    """Any origin under auth = jwt; none under auth = none (tests/test_security.py)."""
    jwt_client = create_app(settings.replace(auth="jwt")).test_client()
    reply = jwt_client.options("/actors")
    assert reply.status_code == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert jwt_client.get("/actors").headers["Access-Control-Allow-Origin"] == "*"
    assert client.options("/actors").status_code == 200
    assert "Access-Control-Allow-Origin" not in client.get("/actors").headers


def test_openapi_describes_every_route(client: FlaskClient):
    spec = client.get("/openapi.json").get_json()
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    app = client.application
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("dashboard."):
            continue  # the dashboard's page and its files are not the API
        path = rule.rule.replace("<", "{").replace(">", "}").rstrip("/")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} undocumented"


MALFORMED = [
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2"),
    ("application/json", b'"just a string"'),
    ("application/json", b"null"),
    ("application/json", b"\xff\xfe"),
    ("application/x-www-form-urlencoded", b"image=%zz&&=="),
    ("text/plain", b"\x00\x01garbage"),
    ("application/json", json.dumps({"image": {"nested": [1]}}).encode()),
    ("application/json", json.dumps({"message": {"x": 1}, "image": None}).encode()),
]


def test_no_route_answers_malformed_bodies_with_a_500(client: FlaskClient):
    actor = _actor(client, stateless=False)
    eid = _ok(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"}))[
        "executionId"]
    paths = ["/actors", f"/actors/{actor['id']}", f"/actors/{actor['id']}/messages",
             f"/actors/{actor['id']}/executions", f"/actors/{actor['id']}/executions/{eid}",
             f"/actors/{actor['id']}/executions/{eid}/logs", f"/actors/{actor['id']}/state",
             "/actors/nope", "/actors/bad:id/messages"]
    for path in paths:
        methods = ["post", "put", "get"] + (["delete"] if path != paths[1] else [])
        for method in methods:
            for content_type, body in MALFORMED:
                reply = getattr(client, method)(path, data=body, content_type=content_type)
                assert reply.status_code < 500, (method, path, body, reply.get_data())
                assert reply.get_json()["status"] in ("success", "error")
        if path == f"/actors/{actor['id']}":
            _ok(client.get(path))  # the actor survived every malformed update


def test_queues_are_validated_shown_and_default(settings: Settings):
    plain = create_app(settings).test_client()
    actor = _ok(plain.post("/actors", json={"image": "x"}))
    assert actor["queue"] == "default" and actor["type"] == "none"
    assert {"uid", "gid", "tenant"} <= set(actor)
    assert _error(plain.post("/actors", json={"image": "x", "queue": "gpu"}), 400).startswith(
        "queue:")
    assert _error(plain.post("/actors", json={"image": "x", "queue": "a b"}), 400).startswith(
        "queue:")
    gpu = create_app(settings.replace(queues="default,gpu")).test_client()
    moved = _ok(gpu.put(f"/actors/{actor['id']}", json={"image": "x", "queue": "gpu"}))
    assert moved["queue"] == "gpu"
    assert _ok(gpu.get(f"/actors/{actor['id']}"))["queue"] == "gpu"


def test_replies_through_an_alias_carry_links_and_nonces_their_fields(client: FlaskClient):
    actor = _actor(client)
    _ok(client.post("/actors/aliases", json={"alias": "greeter", "actorId": actor["id"]}))
    sent = _ok(client.post("/actors/greeter/messages", data={"message": "hi"}))
    assert sent["_links"]["self"].endswith(f"/executions/{sent['executionId']}")
    assert set(sent["_links"]) == {"self", "owner", "messages"}
    record = _ok(client.get(f"/actors/greeter/executions/{sent['executionId']}"))
    assert record["_links"]["self"].endswith(f"/executions/{sent['executionId']}")
    assert record["apiServer"] and record["actorId"] == actor["id"]
    nonce = _ok(client.post(f"/actors/{actor['id']}/nonces", json={"level": "READ"}))
    assert nonce["roles"] and nonce["apiServer"] and nonce["lastUseTime"] is None
    _ok(client.get(f"/actors/{actor['id']}?x-nonce={nonce['id']}"))
    used = _ok(client.get(f"/actors/{actor['id']}/nonces/{nonce['id']}"))
    assert used["lastUseTime"] and used["currentUses"] == 1


def test_actor_lists_page_with_offset_and_limit(client: FlaskClient):
    ids = [_actor(client, name=f"n{i}")["id"] for i in range(5)]
    assert [a["id"] for a in _ok(client.get("/actors"))] == ids, "all, oldest first"
    assert [a["id"] for a in _ok(client.get("/actors?offset=1&limit=2"))] == ids[1:3]
    assert [a["id"] for a in _ok(client.get("/actors?offset=4&limit=10"))] == ids[4:]
    assert _error(client.get("/actors?limit=0"), 400).startswith("limit")


def test_reading_an_actor_does_not_ask_vault_each_time(client: FlaskClient):
    """defaultEnvironment values come through a short cache keyed by the actor's last
    update, so reads cost no Vault request, and an update is seen at once."""
    actor = _actor(client, defaultEnvironment={"K": "v1"})
    platform = client.application.config["ABACO_PLATFORM"]
    calls = []
    real = platform.secrets.get
    platform.secrets.get = lambda *a: calls.append(a) or real(*a)
    for _ in range(5):
        assert _ok(client.get(f"/actors/{actor['id']}"))["defaultEnvironment"] == {"K": "v1"}
    assert len(calls) <= 1
    _ok(client.put(f"/actors/{actor['id']}", json={"image": "abaco-test-echo",
                                                   "defaultEnvironment": {"K": "v2"}}))
    assert _ok(client.get(f"/actors/{actor['id']}"))["defaultEnvironment"] == {"K": "v2"}


def test_doubled_slashes_route_as_single_ones_without_a_redirect(client: FlaskClient):
    """werkzeug answered them with an HTML redirect (found by an attack round), and
    tapipy sends some paths with "//"."""
    actor = _ok(client.post("/actors", json={"image": "abaco-test-echo"}))
    reply = client.get(f"/actors//{actor['id']}//")
    assert reply.status_code == 200 and _ok(reply)["id"] == actor["id"]
    missing = client.delete("/actors//executions/")
    assert missing.status_code in (404, 405) and missing.get_json()["status"] == "error"
