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
from tests.jwt_users import as_user
from tests.test_auth import _actor, _status


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


# -- 7. bad input ----------------------------------------------------------------------------
RISKY = ("BASH_ENV", "ENV", "PERL5OPT", "JAVA_TOOL_OPTIONS", "RUBYOPT", "DOCKER_HOST", "HOME",
         "LD_PRELOAD", "PATH", "PYTHONPATH", "NODE_OPTIONS", "http_proxy", "HTTPS_PROXY",
         "SSL_CERT_FILE", "MSG", "_abaco_access_token", "TMPDIR", "GIT_SSH_COMMAND")


def test_message_parameters_set_only_allowed_variables(client: FlaskClient):
    actor = _actor(client, "alice", defaultEnvironment={"GREETING": "hi", "HOME": "/data"})
    path = f"/actors/{actor['id']}/messages"
    for name in RISKY:
        message = _status(client.post(f"{path}?{name}=x", data={"message": "m"},
                                      headers=as_user("alice")), 400)["message"]
        assert message.startswith(name), message
    _status(client.post(f"{path}?SOMETHING_UPPER=x", data={"message": "m"},
                        headers=as_user("alice")), 400)
    # lowercase names and names the actor declares are parameters (declared ones override,
    # as in Abaco), except the floor above, which even a declaration does not open
    eid = _status(client.post(f"{path}?GREETING=hello&count=3", data={"message": "m"},
                              headers=as_user("alice")), 200)["result"]["executionId"]
    stored = _platform(client).store.get_execution("DEV", actor["id"], eid)
    assert stored["env"] == {"GREETING": "hello", "count": "3"}


def test_message_env_allow_setting_opens_named_patterns(jwt_settings: Settings):
    from api.app import create_app
    client = create_app(jwt_settings.replace(message_env_allow="APP_[A-Z]+")).test_client()
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}/messages"
    _status(client.post(f"{path}?APP_MODE=fast", data={"message": "m"},
                        headers=as_user("alice")), 200)
    _status(client.post(f"{path}?OTHER_MODE=fast", data={"message": "m"},
                        headers=as_user("alice")), 400)


@pytest.mark.parametrize("body, field", [
    ({"image": "x", "maxWorkers": 1.5}, "maxWorkers"),
    ({"image": "x", "maxRunTime": 2.0}, "maxRunTime"),
    ({"image": "x", "minWorkers": True}, "minWorkers"),
    ({"image": "x", "maxWorkers": "1.5"}, "maxWorkers"),
    ({"image": "x", "defaultEnvironment": {"A": "a\x00b"}}, "defaultEnvironment.A"),
    ({"image": "x", "defaultEnvironment": {"A" * 300: "a"}}, "defaultEnvironment"),
    ({"image": "x", "defaultEnvironment": {"A": "v" * 200_000}}, "defaultEnvironment"),
    ({"image": "x", "name": "a\nb"}, "name"),
    ({"image": "x", "name": "n" * 300}, "name"),
    ({"image": "x", "description": "d\x00"}, "description"),
    ({"image": "x", "hints": ["h"] * 100}, "hints"),
    ({"image": "x\x00y"}, "image"),
])
def test_bad_actor_fields_are_refused_naming_the_field(client: FlaskClient,
                                                       body: dict[str, Any], field: str):
    before = len(_platform(client).store.list_actors("DEV"))
    message = _status(client.post("/actors", json=body, headers=as_user("alice")),
                      400)["message"]
    assert message.startswith(field), message
    assert len(_platform(client).store.list_actors("DEV")) == before


def test_bad_message_input_is_refused_before_it_reaches_a_container(client: FlaskClient):
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}/messages"
    alice = as_user("alice")
    assert _status(client.post(path, data={"message": "a\x00b"}, headers=alice),
                   400)["message"].startswith("message")
    assert _status(client.post(f"{path}?tag=a%00b", data={"message": "m"}, headers=alice),
                   400)["message"].startswith("tag")
    for depth in (2_000, 100_000):
        deep = "[" * depth + "]" * depth
        reply = client.post(path, data=deep, content_type="application/json", headers=alice)
        assert reply.status_code == 400 and "deeply" in reply.get_json()["message"]
    _status(client.get(f"/actors/{actor['id']}", headers=alice), 200)  # still fine
    assert _status(client.get(f"{path}", headers=alice), 200)["result"]["messages"] == 0


def test_permission_users_are_bounded_names(client: FlaskClient):
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}/permissions"
    for user in ("u" * 100_000, "bob:x", "bob\x00", "a b", "bob\n"):
        message = _status(client.post(path, json={"user": user, "level": "READ"},
                                      headers=as_user("alice")), 400)["message"]
        assert message.startswith("user"), message
    assert set(_status(client.get(path, headers=as_user("alice")), 200)["result"]) == {"alice"}
    _status(client.post(path, json={"user": "testuser@carbon.super", "level": "READ"},
                        headers=as_user("alice")), 200)


def test_a_chunked_body_over_the_limit_is_413_not_truncated(jwt_settings: Settings):
    """As gunicorn hands a chunked request over: no Content-Length, a terminated input."""
    import io

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from api.app import create_app
    app = create_app(jwt_settings.replace(max_body_bytes=1024))
    client = app.test_client()
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}/messages"

    def chunked(size: int) -> int:
        environ = EnvironBuilder(path=path, method="POST", headers={
            **as_user("alice"), "Transfer-Encoding": "chunked",
            "Content-Type": "application/octet-stream"}).get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ.update({"wsgi.input": io.BytesIO(b"x" * size), "wsgi.input_terminated": True})
        _body, status, _headers = run_wsgi_app(app, environ)
        return int(status.split()[0])

    assert chunked(5000) == 413
    assert chunked(1025) == 413
    assert chunked(1024) == 200
    assert _status(client.get(path, headers=as_user("alice")), 200)["result"]["messages"] == 1


def test_the_openapi_document_states_the_id_patterns(client: FlaskClient):
    import re
    spec = client.get("/openapi.json").get_json()
    params = {p["name"]: p["schema"] for item in spec["paths"].values()
              for op in item.values() if isinstance(op, dict)
              for p in op.get("parameters", [])}
    for name in ("actor_id", "execution_id", "worker_id", "nonce_id", "alias"):
        pattern = re.compile(params[name]["pattern"])
        assert params[name]["maxLength"] <= 128
        assert pattern.match("abc_1.2-3") and not pattern.match("a:b") \
            and not pattern.match("a b")


def test_secrets_hide_in_every_formatting():
    from jobs.settings import Secret
    secret = Secret("hunter2")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!s}", "%s" % secret,  # noqa: UP031
             "{}".format(secret), f"{secret:>20}"]  # noqa: UP032
    assert not any("hunter2" in text for text in shown), shown
    assert secret.reveal() == "hunter2" and secret == "hunter2"
