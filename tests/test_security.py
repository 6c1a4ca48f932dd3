"""The attack campaign of the security issue, each attack a test that failed before.

Execution tokens, alias escalation, slot hogging, container confinement and bad
input; the S3 endpoint has its own module (test_security_s3.py). Runs the real
Flask app on real Redis, S3 and OpenBao.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from jobs.service import Platform
from jobs.settings import Settings
from jobs.tokens import REDACTED, redact_tokens
from tests.test_auth import _actor, _status, as_user
from tests.test_auth import client, jwt_settings  # noqa: F401  (fixtures)


def _platform(client: FlaskClient) -> Platform:
    return client.application.config["ABACO_PLATFORM"]  # type: ignore[no-any-return]


def _running_token(client: FlaskClient, owner: str, roles: tuple[str, ...] = ("user",),
                   **fields: Any) -> tuple[dict[str, Any], str, dict[str, str]]:
    """An actor of ``owner``, one of its executions (not final) and that execution's token."""
    actor = _actor(client, owner, **fields)
    eid = _status(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"},
                              headers=as_user(owner, roles=roles)), 200)["result"]["executionId"]
    token = _platform(client).tokens.mint(owner, "DEV", 60, actor["id"], eid)
    return actor, eid, {"Authorization": f"Bearer {token}"}


# -- 1. execution tokens ---------------------------------------------------------------------
def test_an_execution_token_cannot_act_as_its_owner(client: FlaskClient):
    other = _actor(client, "alice")
    actor, _eid, as_execution = _running_token(client, "alice", stateless=False)
    own = f"/actors/{actor['id']}"
    _status(client.post("/actors", json={"image": "x"}, headers=as_execution), 403)
    _status(client.get("/actors", headers=as_execution), 403)
    for path in (own, f"/actors/{other['id']}"):
        _status(client.post(f"{path}/permissions", json={"user": "mallory", "level": "UPDATE"},
                            headers=as_execution), 403)
        _status(client.put(path, json={"image": "evil"}, headers=as_execution), 403)
        _status(client.post(f"{path}/nonces", json={"level": "READ"}, headers=as_execution),
                403)
        _status(client.delete(f"{path}/messages", headers=as_execution), 403)
        _status(client.delete(path, headers=as_execution), 403)
    _status(client.post("/actors/aliases", json={"alias": "mine", "actorId": actor["id"]},
                        headers=as_execution), 403)
    _status(client.get(f"/actors/{other['id']}", headers=as_execution), 403)
    _status(client.get(f"/actors/{other['id']}/executions", headers=as_execution), 403)
    # what it is for: its own actor, state and executions; messages
    _status(client.get(own, headers=as_execution), 200)
    _status(client.post(f"{own}/state", json={"n": 1}, headers=as_execution), 200)
    assert _status(client.get(f"{own}/state", headers=as_execution), 200)["result"][
        "state"] == {"n": 1}
    _status(client.get(f"{own}/executions", headers=as_execution), 200)
    _status(client.get(f"/actors/{other['id']}", headers=as_user("alice")), 200)


def test_an_execution_token_messages_what_its_owner_may_execute_now(client: FlaskClient):
    actor, eid, as_execution = _running_token(client, "alice")
    bobs = _actor(client, "bob")
    path = f"/actors/{bobs['id']}"
    _status(client.post(f"{path}/messages", data={"message": "m"}, headers=as_execution), 403)
    _status(client.post(f"{path}/permissions", json={"user": "alice", "level": "EXECUTE"},
                        headers=as_user("bob")), 200)
    sent = _status(client.post(f"{path}/messages", data={"message": "m"},
                               headers=as_execution), 200)["result"]["executionId"]
    # it reads what it sent, and only that
    _status(client.get(f"{path}/executions/{sent}", headers=as_execution), 200)
    _status(client.get(f"{path}/executions/{sent}/logs", headers=as_execution), 200)
    bobs_own = _status(client.post(f"{path}/messages", data={"message": "m"},
                                   headers=as_user("bob")), 200)["result"]["executionId"]
    _status(client.get(f"{path}/executions/{bobs_own}", headers=as_user("bob")), 200)
    _status(client.get(f"{path}/executions/{bobs_own}", headers=as_execution), 403)
    # grants are checked at use: a revoked grant stops the token at once
    _status(client.post(f"{path}/permissions", json={"user": "alice", "level": "NONE"},
                        headers=as_user("bob")), 200)
    _status(client.post(f"{path}/messages", data={"message": "m"}, headers=as_execution), 403)
    _status(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"},
                        headers=as_execution), 200)
    assert eid


def test_an_admins_execution_token_carries_no_role(client: FlaskClient):
    admin = ("admin",)
    bobs = _actor(client, "bob")
    actor = _status(client.post("/actors", json={"image": "x"},
                                headers=as_user("root", roles=admin)), 200)["result"]
    eid = _status(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"},
                              headers=as_user("root", roles=admin)), 200)["result"]["executionId"]
    token = _platform(client).tokens.mint("root", "DEV", 60, actor["id"], eid)
    as_execution = {"Authorization": f"Bearer {token}"}
    _status(client.get(f"/actors/{bobs['id']}", headers=as_user("root", roles=admin)), 200)
    _status(client.post(f"/actors/{bobs['id']}/messages", data={"message": "m"},
                        headers=as_execution), 403)
    _status(client.post(f"/actors/{actor['id']}/workers", json={"num": 2},
                        headers=as_execution), 403)


def test_an_execution_token_is_revoked_when_its_execution_ends(client: FlaskClient):
    actor, eid, as_execution = _running_token(client, "alice")
    path = f"/actors/{actor['id']}"
    _status(client.get(path, headers=as_execution), 200)
    _status(client.delete(f"{path}/executions/{eid}", headers=as_user("alice")), 200)
    message = _status(client.get(path, headers=as_execution), 401)["message"]
    assert "revoked" in message and eid in message


def test_logs_never_hand_out_an_execution_token(client: FlaskClient):
    actor, eid, as_execution = _running_token(client, "alice")
    token = as_execution["Authorization"].split()[1]
    printed = f"PATH=/bin\n_abaco_access_token={token}\nHOME=/\n".encode()
    masked = redact_tokens(printed)
    assert token.encode() not in masked and REDACTED in masked and b"HOME=/" in masked
    assert redact_tokens(b"a user's own jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig") == \
        b"a user's own jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"
    platform = _platform(client)
    platform.store.append_log("DEV", actor["id"], eid, printed[:40])  # split mid-token
    platform.store.append_log("DEV", actor["id"], eid, printed[40:])
    live = client.get(f"/actors/{actor['id']}/executions/{eid}/logs",
                      headers=as_user("alice")).get_json()["result"]["logs"]
    assert token not in live and "_abaco_access_token=[actor token redacted]" in live
    platform.logs.ensure_bucket()
    platform.logs.put("DEV", actor["id"], eid, printed, {"id": eid})
    assert token.encode() not in platform.logs.get_logs("DEV", actor["id"], eid)


# -- 2. aliases ------------------------------------------------------------------------------
def test_a_grant_on_an_alias_alone_opens_nothing(client: FlaskClient):
    actor = _actor(client, "alice")
    _status(client.post("/actors/aliases", json={"alias": "front", "actorId": actor["id"]},
                        headers=as_user("alice")), 200)
    _status(client.post("/actors/aliases/front/permissions",
                        json={"user": "mallory", "level": "UPDATE"}, headers=as_user("alice")),
            200)
    mallory = as_user("mallory")
    _status(client.post("/actors/front/messages", data={"message": "m"}, headers=mallory), 403)
    _status(client.put("/actors/front", json={"image": "evil"}, headers=mallory), 403)
    _status(client.post("/actors/front/nonces", json={"level": "READ"}, headers=mallory), 403)
    _status(client.delete("/actors/front", headers=mallory), 403)
    _status(client.get(f"/actors/{actor['id']}", headers=as_user("alice")), 200)
    # with the level on the actor too, the alias works
    _status(client.post(f"/actors/{actor['id']}/permissions",
                        json={"user": "mallory", "level": "EXECUTE"}, headers=as_user("alice")),
            200)
    _status(client.post("/actors/front/messages", data={"message": "m"}, headers=mallory), 200)
    _status(client.put("/actors/front", json={"image": "evil"}, headers=mallory), 403)
