"""Actor configs: CRUD and permissions over the API under auth = jwt, secrets kept in
Vault and never shown, and the values reaching the named actors' executions as
``_actor_configs`` (real Redis, OpenBao; the worker on the shipped fake engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.harness import CALLER, Harness
from tests.jwt_users import as_user


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
    _status(client.put("/actors/configs/db-password", json={"isSecret": False},
                       headers=alice), 400)  # the secret value is never revealed
    updated = _ok(client.put("/actors/configs/db-password", json={
        "isSecret": False, "value": "plain now"}, headers=alice))
    assert updated["value"] == "plain now", "made plain with a new value"
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


def _run_env(harness: Harness, actor: dict[str, Any]) -> dict[str, str]:
    worker = harness.manual_worker(actor)
    harness.send(actor["id"])
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)
    return dict(harness.runner.history[-1].env)


def test_a_config_stays_bound_to_the_actor_its_alias_named(harness: Harness):
    """Found by an attack round: configs matched alias names at run time, so whoever
    took over a freed alias name got the secret (or planted values in another's actor)."""
    from jobs.auth import Caller

    platform = harness.platform
    victim = harness.actor()
    platform.create_alias(CALLER, {"alias": "prod", "actorId": victim["id"]})
    platform.create_config(CALLER, {"name": "dbpass", "value": "hunter2", "isSecret": True,
                                    "actors": "prod"})
    platform.delete_alias(CALLER, "prod")
    mallory = Caller("mallory", "T", frozenset({"user"}))
    hers = platform.create_actor(mallory, {"image": "img-a"})
    platform.store.update_actor("T", hers["id"], {"status": "READY"})
    platform.create_alias(mallory, {"alias": "prod", "actorId": hers["id"]})
    assert "_actor_configs" not in _run_env(harness, platform.store.get_actor("T", hers["id"]))
    assert json.loads(_run_env(harness, victim)["_actor_configs"]) == {"dbpass": "hunter2"}


def test_a_revoked_grant_stops_a_config_and_secrets_stay_hidden(harness: Harness):
    from jobs.auth import Caller
    from jobs.errors import ValidationError

    platform = harness.platform
    owner = Caller("olga", "T", frozenset({"user"}))
    helper = Caller("hal", "T", frozenset({"user"}))
    actor = platform.create_actor(owner, {"image": "img-a"})
    platform.store.update_actor("T", actor["id"], {"status": "READY"})
    platform.set_permission(owner, actor["id"], {"user": "hal", "level": "UPDATE"})
    platform.create_config(helper, {"name": "tok", "value": "TOPSECRET", "isSecret": True,
                                    "actors": actor["id"]})
    assert [c["name"] for c in platform.list_configs(owner)] == ["tok"], \
        "an actor's owner sees what its runs get"
    with pytest.raises(ValidationError):
        platform.update_config(helper, "tok", {"isSecret": False})
    record = platform.store.get_actor("T", actor["id"])
    assert json.loads(_run_env(harness, record)["_actor_configs"]) == {"tok": "TOPSECRET"}
    platform.set_permission(owner, actor["id"], {"user": "hal", "level": "NONE"})
    assert "_actor_configs" not in _run_env(harness, record), "the grant went, so did it"
