"""Actor configs: CRUD and permissions over the API under auth = jwt, secrets kept in
Vault and never shown, and the values reaching the named actors' executions as
``_actor_configs`` (real Redis, OpenBao; the worker on the shipped fake engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from jobs.settings import Settings
from tests.harness import CALLER, Harness
from tests.jwt_users import as_user


@pytest.fixture
def client(jwt_settings: Settings) -> FlaskClient:
    return create_app(jwt_settings).test_client()


def _ok(reply: Any) -> Any:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["result"]


def _status(reply: Any, code: int) -> str:
    assert reply.status_code == code, reply.get_data(as_text=True)
    return str(reply.get_json()["message"])


def test_configs_crud_secrets_and_permissions(client: FlaskClient):
    alice, bob = as_user("alice"), as_user("bob")
    actor = _ok(client.post("/actors", json={"image": "abaco-test-echo"}, headers=alice))
    _ok(client.post("/actors/aliases", json={"alias": "greeter", "actorId": actor["id"]},
                    headers=alice))
    plain = _ok(client.post("/actors/configs", json={
        "name": "db-host", "value": "db.example.org", "isSecret": False,
        "actors": f"{actor['id']},greeter"}, headers=alice))
    assert plain["value"] == "db.example.org" and plain["actors"] == f"{actor['id']},greeter"
    secret = _ok(client.post("/actors/configs", json={
        "name": "db-password", "value": {"pw": "s3cr3t"}, "isSecret": True,
        "actors": [actor["id"]]}, headers=alice))
    assert secret["value"] is None and secret["isSecret"] is True
    listed = _ok(client.get("/actors/configs", headers=alice))
    assert [c["name"] for c in listed] == ["db-host", "db-password"]
    assert "s3cr3t" not in json.dumps(listed)
    platform = client.application.config["ABACO_PLATFORM"]
    raw = platform.store.r.hget(platform.store.keys.configs("DEV"), "db-password")
    assert b"s3cr3t" not in raw, "secret values live in Vault only"
    # bob sees nothing until granted; READ lets him see, not change
    assert _ok(client.get("/actors/configs", headers=bob)) == []
    _status(client.get("/actors/configs/db-host", headers=bob), 404)
    _ok(client.post("/actors/configs/db-host/permissions", json={"user": "bob",
                                                                 "level": "READ"},
                    headers=alice))
    assert _ok(client.get("/actors/configs/db-host", headers=bob))["value"] == "db.example.org"
    _status(client.put("/actors/configs/db-host", json={"value": "x"}, headers=bob), 403)
    # naming an actor needs UPDATE on it
    _status(client.post("/actors/configs", json={"name": "evil", "value": 1,
                                                 "actors": actor["id"]}, headers=bob), 403)
    _status(client.post("/actors/configs", json={"name": "x", "value": 1,
                                                 "actors": "nope"}, headers=alice), 404)
    limited = as_user("lim", roles=("limited",))
    _status(client.post("/actors/configs", json={"name": "l", "value": 1, "actors": "a"},
                        headers=limited), 403)
    for bad in ({"name": "messages", "value": 1, "actors": "a"},
                {"name": "a b", "value": 1, "actors": "a"},
                {"name": "ok", "actors": "a"}, {"name": "ok", "value": 1, "actors": ""},
                {"name": "ok", "value": 1, "actors": "a", "color": "red"}):
        _status(client.post("/actors/configs", json=bad, headers=alice), 400)
    _status(client.post("/actors/configs", json={"name": "db-host", "value": 2,
                                                 "actors": actor["id"]}, headers=alice), 409)
    updated = _ok(client.put("/actors/configs/db-password", json={"isSecret": False},
                             headers=alice))
    assert updated["value"] == {"pw": "s3cr3t"}, "made plain, its value shown"
    _ok(client.delete("/actors/configs/db-password", headers=alice))
    _status(client.get("/actors/configs/db-password", headers=alice), 404)


def test_config_values_reach_the_named_actors_runs(harness: Harness):
    platform = harness.platform
    actor = harness.actor()
    other = harness.actor()
    platform.create_alias(CALLER, {"alias": "named-by-alias", "actorId": actor["id"]})
    platform.create_config(CALLER, {"name": "plain", "value": [1, 2], "actors": actor["id"]})
    platform.create_config(CALLER, {"name": "hidden", "value": "pw", "isSecret": True,
                                    "actors": "named-by-alias"})
    platform.create_config(CALLER, {"name": "elsewhere", "value": 3, "actors": other["id"]})
    worker = harness.manual_worker(actor)
    harness.send(actor["id"])
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)
    env = harness.runner.history[-1].env
    assert json.loads(env["_actor_configs"]) == {"plain": [1, 2], "hidden": "pw"}
