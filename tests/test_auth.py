"""The security suite: JWTs, tenants, roles, permissions, aliases, nonces, actor tokens.

Runs the real API (Flask app, and a threaded HTTP server where requests must be
parallel or come from a container) on real Redis, S3 and OpenBao.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api.app import create_app
from jobs.settings import Settings
from tests.jwt_users import KEYS, _public_pem, as_user, token
from tests.waits import wait_until


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _status(reply: Any, code: int) -> dict[str, Any]:
    assert reply.status_code == code, reply.get_data(as_text=True)
    return dict(reply.get_json())


def _actor(client: FlaskClient, user: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/actors", json={"image": "abaco-test-echo", **fields},
                        headers=as_user(user))
    return dict(_status(reply, 200)["result"])


# -- tokens ---------------------------------------------------------------------------
def _forged_tokens() -> list[tuple[str, dict[str, str], str]]:
    now = int(time.time())
    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "mallory", "tenant": "DEV", "roles": ["admin"],
                            "exp": now + 300}).encode())
    good = token("alice")
    head, _payload, sig = good.split(".")
    tampered = f"{head}.{body}.{sig}"
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    hs_sig = _b64(hmac.new(_public_pem("DEV"), f"{hs_header}.{body}".encode(),
                           hashlib.sha256).digest())
    return [
        ("alg none", {"X-Jwt-Assertion-DEV": f"{header_none}.{body}."}, "invalid token"),
        ("wrong key", {"X-Jwt-Assertion-DEV": token("alice", signer="OTHER")}, "invalid"),
        ("expired", {"X-Jwt-Assertion-DEV": token("alice", exp=now - 10)}, "expired"),
        ("not yet valid", {"X-Jwt-Assertion-DEV": token("alice", nbf=now + 600)},
         "not yet valid"),
        ("tampered payload", {"X-Jwt-Assertion-DEV": tampered}, "invalid token"),
        ("HMAC with the public key", {"X-Jwt-Assertion-DEV": f"{hs_header}.{body}.{hs_sig}"},
         "invalid token"),
        ("tenant A's token on B's header", {"X-Jwt-Assertion-OTHER": token("alice")},
         "invalid token"),
        ("unknown tenant", {"X-Jwt-Assertion-NOPE": token("alice")}, "unknown tenant"),
        ("no credentials", {}, "no credentials"),
        ("garbage", {"Authorization": "Bearer not.a.jwt"}, "invalid token"),
    ]


@pytest.mark.parametrize("case", range(len(_forged_tokens())))
def test_bad_credentials_are_401_saying_why(client: FlaskClient, case: int):
    name, headers, why = _forged_tokens()[case]
    body = _status(client.get("/actors", headers=headers), 401)
    assert why in body["message"], (name, body["message"])


def test_a_token_claiming_another_tenant_is_refused(client: FlaskClient):
    signed = jwt.encode({"sub": "a", "tenant": "DEV", "exp": int(time.time()) + 60},
                        KEYS["OTHER"], algorithm="ES256")
    body = _status(client.get("/actors", headers={"X-Jwt-Assertion-OTHER": signed}), 401)
    assert "not OTHER" in body["message"]


def test_both_header_forms_and_the_abaco_profile(client: FlaskClient, jwt_settings: Settings):
    _status(client.get("/actors", headers=as_user("alice")), 200)
    bearer = {"Authorization": f"Bearer {token('alice')}"}
    _status(client.get("/actors", headers=bearer), 200)
    abaco = create_app(jwt_settings.replace(jwt_profile="abaco")).test_client()
    claims = {"http://wso2.org/claims/enduser": "jdoe@carbon.super",
              "http://wso2.org/claims/role": "Internal/everyone,Internal/abaco-admin",
              "exp": int(time.time()) + 60}
    signed = jwt.encode(claims, KEYS["DEV"], algorithm="RS256")
    actor = _status(abaco.post("/actors", json={"image": "x", "maxWorkers": 3},
                               headers={"X-Jwt-Assertion-DEV": signed}), 200)["result"]
    assert actor["owner"] == "jdoe" and actor["maxWorkers"] == 3, \
        "Abaco's user is the part before @; the admin role is mapped"


# -- roles, ownership, tenants ----------------------------------------------------------
def test_roles_limit_what_users_may_set(client: FlaskClient):
    limited = as_user("lim", roles=("limited",))
    own = _status(client.post("/actors", json={"image": "x"}, headers=limited), 200)["result"]
    assert own["owner"] == "lim", "limited users register actors, as in Abaco"
    _status(client.put(f"/actors/{own['id']}", json={"image": "y"}, headers=limited), 200)
    for field, value in (("minWorkers", 1), ("cronSchedule", "now + 1 hour"),
                         ("privileged", True), ("maxWorkers", 9)):
        body = _status(client.post("/actors", json={"image": "x", field: value},
                                   headers=limited), 403)
        assert body["message"].startswith(field[0].lower()), body["message"]
    _status(client.post(f"/actors/{own['id']}/nonces", json={}, headers=limited), 200)
    _status(client.delete(f"/actors/{own['id']}", headers=limited), 200)
    for field, value in (("privileged", True), ("mounts", [{"hostPath": "/", "containerPath":
                                                             "/h"}]),
                         ("maxWorkers", 9), ("memLimit", "4g"), ("maxCpus", 3 * 10**9),
                         ("useContainerUid", True), ("minWorkers", 5)):
        body = _status(client.post("/actors", json={"image": "x", field: value},
                                   headers=as_user("bob")), 403)
        assert body["message"].startswith(field[0].lower()), body["message"]
    privileged = as_user("pat", roles=("privileged",))
    _status(client.post("/actors", json={"image": "x", "maxWorkers": 9, "privileged": True},
                        headers=privileged), 200)


def test_owners_share_at_levels_and_lists_show_only_readable(client: FlaskClient):
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}"
    assert "READ" in _status(client.get(path, headers=as_user("bob")), 403)["message"]
    _status(client.put(path, json={"image": "y"}, headers=as_user("bob")), 403)
    assert _status(client.get("/actors", headers=as_user("bob")), 200)["result"] == []
    grant = {"user": "bob", "level": "READ"}
    _status(client.post(path + "/permissions", json=grant, headers=as_user("bob")), 403)
    perms = _status(client.post(path + "/permissions", json=grant, headers=as_user("alice")),
                    200)["result"]
    assert perms == {"alice": "UPDATE", "bob": "READ"}
    _status(client.get(path, headers=as_user("bob")), 200)
    _status(client.post(path + "/messages", data={"message": "m"}, headers=as_user("bob")),
            403)
    _status(client.post(path + "/permissions", json={"user": "bob", "level": "EXECUTE"},
                        headers=as_user("alice")), 200)
    _status(client.post(path + "/messages", data={"message": "m"}, headers=as_user("bob")),
            200)
    _status(client.delete(path, headers=as_user("bob")), 403)
    assert [a["id"] for a in _status(client.get("/actors", headers=as_user("bob")),
                                     200)["result"]] == [actor["id"]]
    _status(client.get(path, headers=as_user("carol")), 403)
    _status(client.post(path + "/permissions", json={"user": "ABACO_WORLD", "level": "READ"},
                        headers=as_user("alice")), 200)
    _status(client.get(path, headers=as_user("carol")), 200)
    _status(client.get(path, headers=as_user("root", roles=("admin",))), 200)
    assert _status(client.post(path + "/permissions", json={"user": "x", "level": "ALL"},
                               headers=as_user("alice")), 400)["message"].startswith("level")


def test_nothing_crosses_tenants(client: FlaskClient):
    actor = _actor(client, "alice")
    other = as_user("alice", tenant="OTHER", roles=("admin",))
    _status(client.get(f"/actors/{actor['id']}", headers=other), 404)
    assert _status(client.get("/actors", headers=other), 200)["result"] == []
    _status(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"},
                        headers=other), 404)


# -- aliases ------------------------------------------------------------------------------
def test_aliases_stand_for_actors_and_have_their_own_permissions(client: FlaskClient):
    actor = _actor(client, "alice")
    mine = _actor(client, "bob")
    created = _status(client.post("/actors/aliases", json={"alias": "greeter",
                                                            "actorId": actor["id"]},
                                  headers=as_user("alice")), 200)["result"]
    assert created["actorId"] == actor["id"]
    assert _status(client.get("/actors/greeter", headers=as_user("alice")), 200)[
        "result"]["id"] == actor["id"]
    _status(client.post("/actors/greeter/messages", data={"message": "m"},
                        headers=as_user("alice")), 200)
    _status(client.get("/actors/greeter", headers=as_user("bob")), 403)
    _status(client.post("/actors/aliases/greeter/permissions",
                        json={"user": "bob", "level": "EXECUTE"}, headers=as_user("alice")), 200)
    _status(client.post("/actors/greeter/messages", data={"message": "m"},
                        headers=as_user("bob")), 403)  # the level is needed on the actor too
    _status(client.post(f"/actors/{actor['id']}/permissions",
                        json={"user": "bob", "level": "EXECUTE"}, headers=as_user("alice")), 200)
    _status(client.post("/actors/greeter/messages", data={"message": "m"},
                        headers=as_user("bob")), 200)
    _status(client.get(f"/actors/{actor['id']}", headers=as_user("bob")), 200)
    _status(client.put("/actors/aliases/greeter", json={"actorId": mine["id"]},
                       headers=as_user("bob")), 403)
    _status(client.put("/actors/aliases/greeter", json={"actorId": mine["id"]},
                       headers=as_user("alice")), 403)  # alice cannot UPDATE bob's actor
    _status(client.post("/actors/aliases", json={"alias": "greeter", "actorId": mine["id"]},
                        headers=as_user("bob")), 409)
    for bad, named in (("workers", "reserved"), ("bad alias!", "' !'"), ("a" * 80, "1 to 64")):
        message = _status(client.post("/actors/aliases", json={"alias": bad,
                                                               "actorId": actor["id"]},
                                      headers=as_user("alice")), 400)["message"]
        assert message.startswith("alias") and named in message, message
    assert [a["alias"] for a in _status(client.get("/actors/aliases", headers=as_user("bob")),
                                        200)["result"]] == ["greeter"]
    assert _status(client.get("/actors/aliases", headers=as_user("carol")), 200)["result"] == []
    nonce = _status(client.post("/actors/aliases/greeter/nonces", json={"level": "EXECUTE"},
                                headers=as_user("alice")), 200)["result"]
    assert nonce["alias"] == "greeter"
    _status(client.post(f"/actors/greeter/messages?x-nonce={nonce['id']}",
                        data={"message": "m"}), 200)
    _status(client.post(f"/actors/{actor['id']}/messages?x-nonce={nonce['id']}",
                        data={"message": "m"}), 403)  # the alias's nonce, not the actor's
    _status(client.delete("/actors/aliases/greeter", headers=as_user("alice")), 200)
    _status(client.get("/actors/greeter", headers=as_user("alice")), 404)
    _status(client.get(f"/actors/greeter?x-nonce={nonce['id']}"), 401)


# -- nonces -------------------------------------------------------------------------------
def _nonce(client: FlaskClient, ref: str, owner: str, **fields: Any) -> str:
    path = f"/actors/{ref}/nonces" if not ref.startswith("aliases/") else f"/actors/{ref}/nonces"
    result = _status(client.post(path, json=fields, headers=as_user(owner)), 200)["result"]
    return str(result["id"])


def test_nonces_act_within_their_level_uses_and_target(client: FlaskClient,
                                                       jwt_settings: Settings):
    actor = _actor(client, "alice")
    other = _actor(client, "alice")
    path = f"/actors/{actor['id']}"
    reader = _nonce(client, actor["id"], "alice", level="READ")
    _status(client.get(f"{path}?x-nonce={reader}"), 200)
    _status(client.post(f"{path}/messages?x-nonce={reader}", data={"message": "m"}), 403)
    runner = _nonce(client, actor["id"], "alice", level="EXECUTE", maxUses=2)
    sent = _status(client.post(f"{path}/messages?x-nonce={runner}&color=blue",
                               data={"message": "m"}), 200)["result"]
    platform = client.application.config["ABACO_PLATFORM"]
    record = platform.store.get_execution("DEV", actor["id"], sent["executionId"])
    assert record["env"] == {"color": "blue"} and record["executor"] == "alice"
    _status(client.post(f"/actors/{other['id']}/messages?x-nonce={runner}",
                        data={"message": "m"}), 403)
    assert "no uses left" in _status(client.post(f"{path}/messages?x-nonce={runner}",
                                                 data={"message": "m"}), 401)["message"]
    listed = _status(client.get(f"{path}/nonces/{runner}", headers=as_user("alice")), 200)
    assert listed["result"]["remainingUses"] == 0 and listed["result"]["currentUses"] == 2
    _status(client.delete(f"{path}/nonces/{reader}", headers=as_user("alice")), 200)
    assert "unknown" in _status(client.get(f"{path}?x-nonce={reader}"), 401)["message"]
    _status(client.post(f"{path}/nonces", json={"level": "READ"}, headers=as_user("bob")), 403)
    _status(client.post(f"{path}/nonces", json={"maxUses": 0}, headers=as_user("alice")), 400)
    assert _status(client.get(f"{path}/nonces", headers=as_user("alice")), 200)["result"]


@pytest.fixture
def live_api(jwt_settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The API on a real threaded HTTP server on loopback."""
    server = make_server("127.0.0.1", 0, create_app(jwt_settings), threaded=True)
    port = server.server_port
    settings = jwt_settings.replace(api_public_url=f"http://127.0.0.1:{port}")
    server.app = create_app(settings)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", settings
    server.shutdown()


def test_a_ten_use_nonce_redeemed_by_twenty_parallel_requests(live_api):
    base, _settings = live_api
    headers = as_user("alice")
    actor = requests.post(f"{base}/actors", json={"image": "x"}, headers=headers,
                          timeout=10).json()["result"]
    nonce = requests.post(f"{base}/actors/{actor['id']}/nonces",
                          json={"level": "READ", "maxUses": 10}, headers=headers,
                          timeout=10).json()["result"]["id"]
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _i: requests.get(
            f"{base}/actors/{actor['id']}?x-nonce={nonce}", timeout=30).status_code, range(20)))
    assert sorted(codes) == [200] * 10 + [401] * 10


# -- actor tokens ---------------------------------------------------------------------------
def test_an_actor_updates_its_state_with_its_token(live_api, images: list[str]):
    from jobs.runners.docker import DockerRunner
    from jobs.service import Platform
    from jobs.worker import Worker
    from tests.harness import register_worker

    base, settings = live_api
    settings = settings.replace(actor_network="host")
    headers = as_user("alice")
    actor = requests.post(f"{base}/actors", json={"image": "abaco-test-token",
                                                  "stateless": False}, headers=headers,
                          timeout=10).json()["result"]
    requests.post(f"{base}/actors/{actor['id']}/messages", data={"message": "go"},
                  headers=headers, timeout=10).raise_for_status()
    platform = Platform.from_settings(settings)
    platform.logs.ensure_bucket()
    platform.store.update_actor("DEV", actor["id"], {"status": "READY"})
    worker = Worker(settings, "DEV", actor["id"], "wtoken", platform.store, platform.logs,
                    platform.secrets, DockerRunner(settings))
    register_worker(platform.store, "DEV", actor["id"], "wtoken")
    assert worker.activate()
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)
    state = requests.get(f"{base}/actors/{actor['id']}/state", headers=headers,
                         timeout=10).json()["result"]["state"]
    assert state == {"count": 1, "by": "alice"}
    running = requests.post(f"{base}/actors/{actor['id']}/messages", data={"message": "x"},
                            headers=headers, timeout=10).json()["result"]["executionId"]
    minted = platform.tokens.mint("alice", "DEV", 60, actor["id"], running)
    other = requests.post(f"{base}/actors", json={"image": "x", "stateless": False},
                          headers=as_user("bob"), timeout=10).json()["result"]
    denied = requests.post(f"{base}/actors/{other['id']}/state", json={"x": 1},
                           headers={"Authorization": f"Bearer {minted}"}, timeout=10)
    assert denied.status_code == 403, "the token acts as its owner only"


def test_review_findings_stay_fixed(client: FlaskClient):
    actor = _actor(client, "alice", stateless=False)
    path = f"/actors/{actor['id']}"
    for name in ("HTTP_PROXY", "https_proxy", "LD_PRELOAD", "_abaco_access_token", "MSG"):
        message = _status(client.post(f"{path}/messages?{name}=x", data={"message": "m"},
                                      headers=as_user("alice")), 400)["message"]
        assert message.startswith(name)
    assert _status(client.post("/actors", json={"image": "x", "maxRunTime": 1e400},
                               headers=as_user("alice")), 400)["message"].startswith("maxRunTime")
    # a nonce cannot turn itself into a permanent grant
    updater = _nonce(client, actor["id"], "alice", level="UPDATE")
    _status(client.post(f"{path}/permissions?x-nonce={updater}",
                        json={"user": "mallory", "level": "UPDATE"}), 403)
    _status(client.get(f"{path}/nonces?x-nonce={updater}"), 403)
    # bob's alias stops working when alice revokes bob
    _status(client.post(f"{path}/permissions", json={"user": "bob", "level": "UPDATE"},
                        headers=as_user("alice")), 200)
    _status(client.post("/actors/aliases", json={"alias": "bobs", "actorId": actor["id"]},
                        headers=as_user("bob")), 200)
    _status(client.get("/actors/bobs", headers=as_user("bob")), 200)
    _status(client.post(f"{path}/permissions", json={"user": "bob", "level": "NONE"},
                        headers=as_user("alice")), 200)
    _status(client.get("/actors/bobs", headers=as_user("bob")), 403)
    # nonces are visible only to their creator and the target's owner
    _status(client.post(f"{path}/permissions", json={"user": "bob", "level": "UPDATE"},
                        headers=as_user("alice")), 200)
    assert _status(client.get(f"{path}/nonces", headers=as_user("bob")), 200)["result"] == []
    _status(client.get(f"{path}/nonces/{updater}", headers=as_user("bob")), 404)
    # an alias may not shadow an actor id; limited users stop at EXECUTE
    _status(client.post("/actors/aliases", json={"alias": actor["id"], "actorId": actor["id"]},
                        headers=as_user("alice")), 409)
    _status(client.post(f"{path}/permissions", json={"user": "lim", "level": "UPDATE"},
                        headers=as_user("alice")), 200)
    limited = as_user("lim", roles=("limited",))
    _status(client.post(f"{path}/messages", data={"message": "m"}, headers=limited), 200)
    _status(client.put(path, json={"image": "y"}, headers=limited), 403)


def test_tapis_v3_tokens_on_the_v3_routes(jwt_settings: Settings):
    from tests.jwt_users import KEYS

    client = create_app(jwt_settings).test_client()

    def tapis(user: str, key: str = "DEV", **extra: Any) -> dict[str, str]:
        claims = {"tapis/username": user, "tapis/tenant_id": "DEV",
                  "exp": int(time.time()) + 60, **extra}
        algorithm = "RS256" if key == "DEV" else "ES256"
        return {"X-Tapis-Token": jwt.encode(claims, KEYS[key], algorithm=algorithm)}

    made = _status(client.post("/v3/actors", json={"image": "x"}, headers=tapis("tina")),
                   200)["result"]
    assert made["owner"] == "tina" and "default_environment" in made, "snake_case on /v3"
    assert made["_links"]["self"].endswith(f"/v3/actors/{made['id']}")
    _status(client.get("/v3/actors", headers=tapis("tina", key="OTHER")), 401)
    _status(client.post("/v3/actors", json={"image": "x", "privileged": True},
                        headers=tapis("tina")), 403)
    _status(client.post("/v3/actors", json={"image": "x", "privileged": True},
                        headers=tapis("root", **{"tapis/roles": ["abaco_admin"]})), 200)
    tenants = _status(client.get("/v3/tenants"), 200)["result"]
    assert [t["tenant_id"] for t in tenants] == sorted(t["tenant_id"] for t in tenants)
    assert any(t["tenant_id"] == "DEV" and "PUBLIC KEY" in t["public_key"] for t in tenants)
    assert _status(client.get("/v3/sites"), 200)["result"][0]["site_id"] == "local"


# -- verified tokens are remembered (jobs.auth.VerifiedTokens) -------------------------
def test_a_remembered_token_still_expires_on_time(client: FlaskClient):
    expires = int(time.time()) + 2
    headers = {"X-Jwt-Assertion-DEV": token("alice", exp=expires)}
    _status(client.get("/actors", headers=headers), 200)
    _status(client.get("/actors", headers=headers), 200)  # now from memory
    wait_until(lambda: time.time() > expires + 0.05, 5, "the token's exp")
    body = _status(client.get("/actors", headers=headers), 401)
    assert "expired" in body["message"]


def test_a_remembered_token_lends_nothing_to_look_alikes(client: FlaskClient):
    good = token("alice")
    _status(client.get("/actors", headers={"X-Jwt-Assertion-DEV": good}), 200)
    head, _payload, sig = good.split(".")
    body = _b64(json.dumps({"sub": "mallory", "tenant": "DEV", "roles": ["admin"],
                            "exp": int(time.time()) + 300}).encode())
    _status(client.get("/actors", headers={"X-Jwt-Assertion-DEV": f"{head}.{body}.{sig}"}),
            401)
    _status(client.get("/actors", headers={"X-Jwt-Assertion-OTHER": good}), 401)
