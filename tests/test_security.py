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
    # Found by an attack round: the text right after a token went with it.
    assert redact_tokens(f"{token}END-x".encode()) == REDACTED + b"END-x"
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
    ({"image": "x", "maxRunTime": 2.5}, "maxRunTime"),
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


# -- 4, 5, 6. containers ---------------------------------------------------------------------
def _confined_run(settings: Settings, actor: dict[str, Any], env: dict[str, str] | None = None,
                  ) -> tuple[Any, str, dict[str, Any]]:
    """Build the spec as a worker does and run it on the real engine; the result, the
    logs and the container's HostConfig (with the user it ran as under ``User``)."""
    import time

    from jobs.run_record import build_spec
    from jobs.runners.docker import DockerRunner
    from jobs.tokens import TokenSigner

    runner = DockerRunner(settings)
    actor = {"tenant": "T", "owner": "alice", "revision": 1, "token": False, **actor}
    execution = {"id": f"e{time.monotonic_ns()}", "msg": "m", "env": env or {}}
    spec = build_spec(settings, TokenSigner(settings), actor, execution, "w1", {}, None, None)
    handle = runner.start(spec)
    chunks: list[bytes] = []
    try:
        attrs = runner.client.containers.get(handle).attrs
        host_config = {**attrs["HostConfig"], "User": attrs["Config"]["User"]}
        result = runner.wait(handle, chunks.append, time.time() + 60)
    finally:
        runner.stop(handle, remove=True)
    return result, b"".join(chunks).decode(), host_config


def test_a_plain_actor_runs_confined(settings: Settings, images: list[str]):
    result, logs, host = _confined_run(settings, {"id": "a1", "image": "abaco-test-echo"})
    assert result.exit_code == 0, logs
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024**2 and host["NanoCpus"] == 10**9
    assert host["LogConfig"]["Config"]["max-size"] == str(2 * settings.max_log_bytes)
    assert host["CapDrop"] == ["ALL"] and "NET_RAW" not in host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"] and not host.get("Binds")
    assert host["PidsLimit"] == settings.pids_limit


def test_actors_run_as_the_platform_user_unless_they_use_the_container_uid(
        settings: Settings, images: list[str]):
    result, _logs, plain = _confined_run(settings, {"id": "a1", "image": "abaco-test-echo"})
    assert result.exit_code == 0 and plain["User"] == "65534:65534"
    result, _logs, own = _confined_run(settings, {"id": "a1", "image": "abaco-test-echo",
                                                  "use_container_uid": True})
    assert result.exit_code == 0 and own["User"] == ""


def test_no_memory_limit_means_the_default_cap(settings: Settings, images: list[str]):
    capped = settings.replace(actor_mem_default="16m")
    result, _logs, host = _confined_run(capped, {"id": "a1", "image": "abaco-test-memhog"},
                                        env={"MB": "64"})
    assert host["Memory"] == 16 * 1024**2
    assert result.oom_killed is True


def test_a_privileged_actor_gets_the_socket_of_the_runners_engine(settings: Settings,
                                                                  images: list[str],
                                                                  tmp_path: Any):
    import os

    from jobs.runners.docker import engine_socket

    default = engine_socket(settings.replace(docker_host=""))
    assert default is not None
    elsewhere = tmp_path / "engine.sock"
    os.symlink(default, elsewhere)  # the same engine under another name, as docker_host
    moved = settings.replace(docker_host=f"unix://{elsewhere}")
    _result, _logs, host = _confined_run(moved, {"id": "a1", "image": "abaco-test-echo",
                                                 "privileged": True})
    assert host["Binds"] == [f"{elsewhere}:/var/run/docker.sock:rw"]
    assert host["GroupAdd"] == [str(os.stat(default).st_gid)]
    assert not host.get("CapDrop")


def test_mounts_apply_only_under_allowed_host_paths(jwt_settings: Settings, images: list[str],
                                                    tmp_path: Any):
    from api.app import create_app

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("from the host\n")
    settings = jwt_settings.replace(mount_allow=str(shared))
    client = create_app(settings).test_client()
    admin = as_user("root", roles=("privileged",))
    mount = {"hostPath": str(shared), "containerPath": "/data", "mode": "ro"}
    for bad, named in (({**mount, "hostPath": "/etc"}, "mounts.hostPath"),
                       ({**mount, "hostPath": f"{shared}/../x"}, "mounts.hostPath"),
                       ({**mount, "mode": "rx"}, "mounts.mode"),
                       ({"hostPath": str(shared)}, "mounts")):
        message = _status(client.post("/actors", json={"image": "abaco-test-echo",
                                                       "mounts": [bad]}, headers=admin),
                          400)["message"]
        assert message.startswith(named), message
    actor = _status(client.post("/actors", json={"image": "abaco-test-echo", "mounts": [mount],
                                                 "privileged": True}, headers=admin),
                    200)["result"]
    assert actor["mounts"] == [{"hostPath": str(shared), "containerPath": "/data",
                                "mode": "ro"}]
    stored = _platform(client).store.get_actor("DEV", actor["id"])
    result, _logs, host = _confined_run(settings, {**stored, "token": False})
    assert result.exit_code == 0
    assert host["Binds"][0] == f"{shared}:/data:ro"
    from jobs.runners.base import StartFailed
    with pytest.raises(StartFailed, match="no longer allowed"):
        _confined_run(settings.replace(mount_allow=""), stored)


# -- 3. slot hogging -------------------------------------------------------------------------
def test_warm_workers_of_one_actor_never_starve_another_actors_message(settings: Settings):
    """A privileged user's actor asks for 1000 warm workers and fills the host; another
    user's message must still run: warm workers beyond a fair share are reclaimed."""
    from tests.harness import running_harness
    from tests.waits import wait_until

    with running_harness(settings, max_workers_per_host=4) as harness:
        scheduler, placer = harness.scheduler, harness.scheduler.placer
        hog = harness.actor(min_workers=1000)
        wait_until(lambda: scheduler.tick() or placer.capacity() == 0, 20, "the hog fills up")
        _victims_message_runs(harness)
        wait_until(lambda: scheduler.tick() or len(harness.store.workers("T", hog["id"])) >= 2,
                   30, "the hog warm again, within its share")


def _victims_message_runs(harness: Any) -> None:
    from tests.waits import wait_until

    victim = harness.actor()
    eid = harness.send(victim["id"])
    wait_until(lambda: harness.scheduler.tick() or harness.execution(victim["id"], eid)[
        "status"] == "COMPLETE", 30, "the victim's message runs")


def test_plain_users_keep_at_most_the_settings_warm_workers(client: FlaskClient):
    message = _status(client.post("/actors", json={"image": "x", "minWorkers": 1000},
                                  headers=as_user("bob")), 403)["message"]
    assert message.startswith("minWorkers")
    _status(client.post("/actors", json={"image": "x", "minWorkers": 1}, headers=as_user("bob")),
            200)


def test_a_user_may_own_only_the_settings_number_of_actors(jwt_settings: Settings):
    from api.app import create_app
    client = create_app(jwt_settings.replace(user_max_actors=2)).test_client()
    for _ in range(2):
        _actor(client, "quota-user")
    message = _status(client.post("/actors", json={"image": "x"},
                                  headers=as_user("quota-user")), 403)["message"]
    assert "user_max_actors" in message


def test_per_user_worker_quota_caps_the_workers_started(settings: Settings):
    from jobs.runners.fake import FakeRun, FakeRunner
    from tests.harness import running_harness
    from tests.waits import wait_until

    runner = FakeRunner(lambda spec: FakeRun(duration_s=3.0))
    with running_harness(settings, runner, max_workers_per_host=8,
                         user_max_workers=2) as harness:
        actors = [harness.actor() for _ in range(3)]
        for actor in actors:
            for _ in range(2):
                harness.send(actor["id"])
        held = lambda: sum(len(harness.store.workers("T", a["id"])) for a in actors)  # noqa: E731
        wait_until(lambda: harness.scheduler.tick() or held() >= 2, 20, "workers start")
        for _ in range(3):
            harness.scheduler.tick()
            assert held() <= 2


# -- 6. the workers' Vault token -------------------------------------------------------------
def test_workers_get_a_read_only_vault_token_of_their_own(settings: Settings):
    import hvac
    import hvac.exceptions

    from jobs.errors import BackendMisconfigured
    from jobs.secrets import SecretStore

    root = settings.vault_token.reveal()
    assert settings.worker_vault_token, "abaco up makes the workers' token"
    workers = settings.for_workers()
    env = workers.as_env()
    assert env["ABACO_VAULT_TOKEN"] == settings.worker_vault_token.reveal() != root
    assert root not in env.values()
    SecretStore(settings).put("T", "sec-actor", {"KEY": "value"})
    as_worker = SecretStore(workers)
    assert as_worker.get("T", "sec-actor") == {"KEY": "value"}
    assert as_worker.renew_own_token()
    with pytest.raises(BackendMisconfigured):
        as_worker.put("T", "sec-actor", {"KEY": "changed"})
    with pytest.raises(BackendMisconfigured):
        as_worker.delete("T", "sec-actor")
    client = hvac.Client(url=settings.vault_addr, token=workers.vault_token.reveal())
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.list_mounted_secrets_engines()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.create(policies=["root"])
    assert SecretStore(settings).get("T", "sec-actor") == {"KEY": "value"}


# -- the attack campaign's second round --------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"image": "x", "memLimit": "0"}, "memLimit"),
    ({"image": "x", "memLimit": "00000m"}, "memLimit"),
    ({"image": "x", "maxRunTime": 2**53}, "maxRunTime"),
    ({"image": "x", "maxCpus": 4}, "maxCpus"),
    ({"image": "UPPER/Case"}, "image"),
    ({"image": "abaco-test-echo@sha256:zz"}, "image"),
    ({"image": "127.0.0.1:23600/x"}, "image"),
    ({"image": "x", "defaultEnvironment": {"A": float("nan")}}, "defaultEnvironment.A"),
    ({"image": "x", "defaultEnvironment": {f"V{i}": "v" * 60_000 for i in range(7)}},
     "defaultEnvironment"),
    ({"image": "x", "name": "\ud800"}, "name"),
    ({"image": "x", "cronSchedule": "garbage"}, "cronSchedule"),
])
def test_second_round_bad_actor_fields(client: FlaskClient, body: dict[str, Any], field: str):
    message = _status(client.post("/actors", json=body, headers=as_user("alice")),
                      400)["message"]
    assert message.startswith(field), message


def test_numbers_json_cannot_carry_are_refused(client: FlaskClient):
    actor = _actor(client, "alice", stateless=False)
    path = f"/actors/{actor['id']}"
    for sub, body in (("messages", b'{"a": 1e400}'), ("state", b'{"x": 1e400}')):
        reply = client.post(f"{path}/{sub}", data=body, content_type="application/json",
                            headers=as_user("alice"))
        assert reply.status_code == 400, reply.get_data(as_text=True)
    big = "m" * (128 * 1024)
    assert _status(client.post(f"{path}/messages", data={"message": big},
                               headers=as_user("alice")), 400)["message"].startswith("message")


def test_sharing_bodies_refuse_unknown_fields_and_odd_aliases(client: FlaskClient):
    actor = _actor(client, "alice")
    alice = as_user("alice")
    _status(client.post(f"/actors/{actor['id']}/permissions",
                        json={"user": "bob", "level": "READ", "extra": 1}, headers=alice), 400)
    _status(client.post(f"/actors/{actor['id']}/nonces", json={"level": "READ", "x": 1},
                        headers=alice), 400)
    for name in (".", "..", "-", "_"):
        _status(client.post("/actors/aliases", json={"alias": name, "actorId": actor["id"]},
                            headers=alice), 400)


def test_permission_names_are_shown_as_granted(client: FlaskClient):
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}/permissions"
    granted = _status(client.post(path, json={"user": "ABACO_WORLD", "level": "READ"},
                                  headers=as_user("alice")), 200)["result"]
    assert granted == {"ABACO_WORLD": "READ", "alice": "UPDATE"}
    _status(client.post(path, json={"user": "some_user", "level": "READ"},
                        headers=as_user("alice")), 200)
    assert "some_user" in _status(client.get(path, headers=as_user("alice")), 200)["result"]


def test_a_nonce_acts_only_while_its_creator_holds_the_grant_and_carries_no_role(
        client: FlaskClient):
    actor = _actor(client, "alice")
    path = f"/actors/{actor['id']}"
    _status(client.post(f"{path}/permissions", json={"user": "bob", "level": "UPDATE"},
                        headers=as_user("alice")), 200)
    nonce = _status(client.post(f"{path}/nonces", json={"level": "UPDATE"},
                                headers=as_user("bob")), 200)["result"]["id"]
    _status(client.get(f"{path}?x-nonce={nonce}"), 200)
    _status(client.post(f"{path}/permissions", json={"user": "bob", "level": "NONE"},
                        headers=as_user("alice")), 200)
    _status(client.get(f"{path}?x-nonce={nonce}"), 403)
    _status(client.delete(f"{path}?x-nonce={nonce}"), 403)
    # a privileged user's nonce does not lend the privileged role
    pats = _actor(client, "alice")
    _status(client.post(f"/actors/{pats['id']}/permissions",
                        json={"user": "pat", "level": "UPDATE"}, headers=as_user("alice")), 200)
    lent = _status(client.post(f"/actors/{pats['id']}/nonces", json={"level": "UPDATE"},
                               headers=as_user("pat", roles=("privileged",))),
                   200)["result"]["id"]
    _status(client.put(f"/actors/{pats['id']}?x-nonce={lent}",
                       json={"image": "x", "privileged": True}), 403)


def test_an_update_grantee_cannot_change_the_code_of_an_elevated_actor(client: FlaskClient):
    pat = as_user("pat", roles=("privileged",))
    actor = _status(client.post("/actors", json={"image": "x", "useContainerUid": True},
                                headers=pat), 200)["result"]
    _status(client.post(f"/actors/{actor['id']}/permissions",
                        json={"user": "alice", "level": "UPDATE"}, headers=pat), 200)
    message = _status(client.put(f"/actors/{actor['id']}", json={"image": "evil"},
                                 headers=as_user("alice")), 403)["message"]
    assert message.startswith("privileged")
    _status(client.put(f"/actors/{actor['id']}", json={"image": "y"}, headers=pat), 200)


def test_deleting_an_actor_deletes_its_aliases(client: FlaskClient):
    actor = _actor(client, "alice")
    _status(client.post("/actors/aliases", json={"alias": "gone-soon", "actorId": actor["id"]},
                        headers=as_user("alice")), 200)
    _status(client.delete(f"/actors/{actor['id']}", headers=as_user("alice")), 200)
    _status(client.get("/actors/aliases/gone-soon", headers=as_user("alice")), 404)


def test_mounts_resolve_links_and_spare_system_paths(jwt_settings: Settings, tmp_path: Any):
    import os

    from api.app import create_app

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    os.symlink("/etc", allowed / "etclink")
    client = create_app(jwt_settings.replace(mount_allow=str(allowed))).test_client()
    pat = as_user("pat", roles=("privileged",))
    for mount, field in (({"hostPath": f"{allowed}/etclink", "containerPath": "/data"},
                          "mounts.hostPath"),
                         ({"hostPath": str(allowed), "containerPath": "/proc/x"},
                          "mounts.containerPath"),
                         ({"hostPath": str(allowed), "containerPath": "/"},
                          "mounts.containerPath")):
        message = _status(client.post("/actors", json={"image": "x", "mounts": [mount]},
                                      headers=pat), 400)["message"]
        assert message.startswith(field), message


def test_an_execution_token_does_not_see_workers(client: FlaskClient):
    actor, _eid, as_execution = _running_token(client, "alice")
    _status(client.get(f"/actors/{actor['id']}/workers", headers=as_execution), 403)


def test_many_actors_kept_warm_by_one_user_never_starve_another_users_message(
        settings: Settings):
    """Ten actors with minWorkers 1 each (each allowed) fill a host of four: another
    user's message still runs, since a waiting message beats warmth."""
    from tests.harness import running_harness
    from tests.waits import wait_until

    with running_harness(settings, max_workers_per_host=4) as harness:
        for _ in range(10):
            harness.actor(min_workers=1)
        wait_until(lambda: harness.scheduler.tick() or harness.scheduler.placer.capacity() == 0,
                   20, "the host full")
        _victims_message_runs(harness)



def test_under_auth_none_an_execution_token_still_acts_as_its_execution(settings: Settings):
    from api.app import create_app

    client = create_app(settings).test_client()  # auth = none: the anonymous admin
    actor = _status(client.post("/actors", json={"image": "x"}), 200)["result"]
    eid = _status(client.post(f"/actors/{actor['id']}/messages", data={"message": "m"}),
                  200)["result"]["executionId"]
    token = _platform(client).tokens.mint("anonymous", settings.default_tenant, 60,
                                          actor["id"], eid)
    path = f"/actors/{actor['id']}/executions/{eid}/results"
    _status(client.post(path, data=b"r", headers={"Authorization": f"Bearer {token}"}), 200)
    _status(client.post(path, data=b"r"), 403)  # the admin is not the execution
    _status(client.post("/actors", json={"image": "x"},
                        headers={"Authorization": f"Bearer {token}"}), 403)
    assert client.get(path).data == b"r"
    _status(client.get(f"/actors/{actor['id']}/executions?limit=99999999999999999999"), 400)


# -- auth = none: this machine only, and no web page (api.origin_guard) -----------------
def test_under_auth_none_other_origins_and_names_are_refused(settings: Settings):
    """Found by an attack round: every reply allowed any origin, so any web page a user
    of the local stack opened could register a privileged actor (the engine's socket)."""
    from api.app import create_app

    app = create_app(settings).test_client()
    form = {"image": "abaco-test-echo", "privileged": "true"}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Host": "evil.example"}, {"Host": "rebound.example:8000"}):
        refused = app.post("/actors", data=form, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.get_json()["status"] == "error"
        assert app.options("/actors", headers=headers).status_code == 403
    assert app.get("/actors").get_json()["result"] == []  # nothing was registered
    same = app.get("/actors", headers={"Origin": "http://localhost"})
    assert same.status_code == 200
    for host in ("127.0.0.1:8000", "[::1]:8000", "localhost"):
        assert app.get("/actors", headers={"Host": host}).status_code == 200
    assert "Access-Control-Allow-Origin" not in app.get("/actors").headers
    assert "Access-Control-Allow-Origin" not in app.get("/actors/nosuch").headers


def test_under_jwt_any_origin_may_call_with_a_token(client: FlaskClient):
    reply = client.get("/actors", headers={**as_user("alice"), "Origin": "https://app.example"})
    assert reply.status_code == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
