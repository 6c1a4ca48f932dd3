"""The launcher: one-line errors, reuse, restarts, and data that survives them.

These tests start their own Redis, OpenBao, API and scheduler on other ports, in
their own data dir, so that killing them does not disturb the shared test services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobs.secrets import SecretStore
from jobs.settings import Secret, Settings, load_settings
from jobs.store import Store
from launcher import components, stack
from tests.conftest import ROOT, TEST_PORTS
from tests.waits import wait_until


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by something that is not Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_port_is_a_one_line_error_naming_the_fix(listener: int, tmp_path: Path):
    env = {**os.environ, "ABACO_DATA_DIR": str(tmp_path),
           "ABACO_REDIS_URL": f"redis://127.0.0.1:{listener}/0"}
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "up"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    error = done.stderr.strip()
    assert "\n" not in error
    assert f"port {listener}" in error and "redis" in error and "ABACO_REDIS_URL" in error
    assert "[1/6] redis" in done.stdout, "progress is shown"


def _own(tmp_path: Path, services: Settings, **changes: object) -> Settings:
    """A stack of its own next to the shared test services (whose S3 it shares)."""
    return load_settings(env={}, data_dir=tmp_path,
                         redis_url=f"redis://127.0.0.1:{TEST_PORTS['redis'] + 1}/0",
                         vault_addr=f"http://127.0.0.1:{TEST_PORTS['vault'] + 10}",
                         api_port=TEST_PORTS["api"] + 10, s3_endpoint=services.s3_endpoint,
                         s3_secret_key=services.s3_secret_key, **changes)


def _restart(component: stack.Component, settings: Settings) -> None:
    pid = stack.pid_alive(component.paths, component.name)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert "started" in type(component)(settings, component.paths).up()


@pytest.mark.parametrize("mode", ["always", "everysec"])
def test_the_redis_it_starts_syncs_as_the_setting_says(tmp_path: Path, services: Settings,
                                                        mode: str):
    settings = stack.with_local_secrets(_own(tmp_path, services, redis_appendfsync=mode))
    paths = stack.Paths(tmp_path)
    component = stack.RedisComponent(settings, paths)
    try:
        assert "started" in component.up()
        client = Store.from_settings(settings).r
        assert client.config_get("appendfsync")["appendfsync"] == mode
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        stack.down(settings, say=lambda _line: None)


def test_queued_messages_survive_a_redis_crash(tmp_path: Path, services: Settings):
    settings = stack.with_local_secrets(_own(tmp_path, services))
    paths = stack.Paths(tmp_path)
    redis_component = stack.RedisComponent(settings, paths)
    try:
        assert "started" in redis_component.up()
        assert "reused" in stack.RedisComponent(settings, paths).up()
        store = Store.from_settings(settings)
        store.create_actor({"id": "a1", "tenant": "T", "image": "img", "status": "READY"})
        store.post_message({"id": "e1", "tenant": "T", "actor_id": "a1",
                            "status": "SUBMITTED"})
        _restart(redis_component, settings)
        store = Store.from_settings(settings)
        assert store.queued_ids("T", "a1") == ["e1"]
        assert store.r.xlen(store.keys.inbox("T", "a1")) == 1
    finally:
        stack.down(settings, say=lambda _line: None)


def test_up_returns_once_redis_has_loaded_its_data(tmp_path: Path, services: Settings):
    """Redis answers LOADING while it reads its append-only file back: up() is done
    only when a command is answered, not when the port opens."""
    settings = stack.with_local_secrets(_own(tmp_path, services))
    paths = stack.Paths(tmp_path)
    component = stack.RedisComponent(settings, paths)
    try:
        assert "started" in component.up()
        client = Store.from_settings(settings).r
        filler = "x" * 100
        for batch in range(40):  # enough that reading it back takes a while
            with client.pipeline(transaction=False) as pipe:
                for i in range(10_000):
                    pipe.set(f"fill:{batch}:{i}", filler)
                pipe.execute()
        _restart(component, settings)
        probe = redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0),
                                     password=settings.redis_password.reveal() or None)
        assert probe.info("persistence")["loading"] == 0  # unlike the platform's client,
        # this one does not retry a LOADING reply
        assert probe.dbsize() >= 400_000
    finally:
        stack.down(settings, say=lambda _line: None)


def test_the_stacks_processes_reach_its_redis_over_a_unix_socket(tmp_path: Path,
                                                                 services: Settings):
    settings = stack.with_local_secrets(_own(tmp_path, services))
    paths = stack.Paths(tmp_path)
    assert stack.over_local_socket(settings, paths) == settings, "no socket yet: TCP"
    try:
        stack.RedisComponent(settings, paths).up()
        local = stack.over_local_socket(settings, paths)
        assert local.redis_url == f"unix://{paths.run / 'redis.sock'}?db=0"
        assert (paths.run / "redis.sock").stat().st_mode & 0o077 == 0, "owner only"
        Store.from_settings(local).r.set("probe", b"1")
        assert Store.from_settings(settings).r.get("probe") == b"1", "the same Redis"
        wrong = local.replace(redis_password=Secret("not-the-password"))
        assert stack.over_local_socket(wrong.replace(redis_url=settings.redis_url),
                                       paths).redis_url == settings.redis_url
    finally:
        stack.down(settings, say=lambda _line: None)


def test_secrets_survive_an_openbao_restart(tmp_path: Path, services: Settings):
    settings = _own(tmp_path, services)
    paths = stack.Paths(tmp_path)
    paths.make()
    vault = stack.VaultComponent(settings, paths)
    try:
        vault.up()
        settings = stack.with_local_secrets(settings)
        assert oct((paths.secrets / "vault.json").stat().st_mode & 0o777) == "0o600"
        SecretStore(settings).put("T", "a1", {"KEY": "kept"})
        _restart(stack.VaultComponent(settings, paths), settings)
        assert SecretStore(settings).get("T", "a1") == {"KEY": "kept"}
    finally:
        stack.down(settings, say=lambda _line: None)


def test_status_names_every_component(api_stack: Settings):
    lines = stack.status(api_stack)
    for name in ("redis", "s3", "vault", "dockerd", "api", "scheduler", "workers"):
        assert any(line.startswith(name) for line in lines), name
    assert any(line.startswith("api") and "running" in line for line in lines)


def _cli(command: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.as_env()}
    return subprocess.run([sys.executable, "-m", "launcher.cli", command], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


def _line(output: str, name: str) -> str:
    """The progress line of ``up`` with the outcome for component ``name``."""
    lines = [line for line in output.splitlines() if f"] {name} " in line]
    return lines[-1] if lines else ""


@pytest.fixture
def own_stack(tmp_path: Path, services: Settings,
              docker_client: object) -> Iterator[Settings]:
    """A whole stack of its own, started by ``abaco up``, stopped by ``abaco down``."""
    settings = _own(tmp_path, services, api_workers=2)
    try:
        done = _cli("up", settings)
        assert done.returncode == 0, done.stdout + done.stderr
        yield settings
    finally:
        _cli("down", settings)


def _api(settings: Settings) -> stack.ApiComponent:
    return stack.ApiComponent(settings, stack.Paths(settings.data_dir))


def test_up_restarts_an_api_whose_master_was_killed(own_stack: Settings):
    paths = stack.Paths(own_stack.data_dir)
    master = stack.pid_alive(paths, "api")
    assert master is not None
    workers = [pid for pid in stack.session_members(master, "gunicorn") if pid != master]
    assert workers, "gunicorn forked its workers into the master's session"
    assert (paths.run / "gunicorn.ctl").is_socket(), "the stack's own control socket"

    os.kill(master, signal.SIGKILL)
    done = _cli("up", own_stack)  # at once: the orphaned workers may still answer

    assert done.returncode == 0, done.stdout + done.stderr
    assert "started" in _line(done.stdout, "api"), done.stdout
    assert "reused" in _line(done.stdout, "redis"), "only what died is started again"
    restarted = stack.pid_alive(paths, "api")
    assert restarted not in (None, master)
    wait_until(lambda: not any(stack._alive(pid) for pid in workers), 30,
               "the killed master's workers gone")
    wait_until(_api(own_stack).answers, 30, "the API answering again")
    assert stack.pid_alive(paths, "api") == restarted


def test_up_restarts_a_killed_scheduler(own_stack: Settings):
    paths = stack.Paths(own_stack.data_dir)
    scheduler = stack.pid_alive(paths, "scheduler")
    assert scheduler is not None

    os.kill(scheduler, signal.SIGKILL)
    done = _cli("up", own_stack)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "started" in _line(done.stdout, "scheduler"), done.stdout
    assert "reused" in _line(done.stdout, "api"), done.stdout
    assert stack.pid_alive(paths, "scheduler") not in (None, scheduler)
    wait_until(_api(own_stack).answers, 30, "the API answering")


def test_down_kills_what_a_dead_api_master_left_behind(own_stack: Settings):
    paths = stack.Paths(own_stack.data_dir)
    master = stack.pid_alive(paths, "api")
    assert master is not None
    workers = [pid for pid in stack.session_members(master, "gunicorn") if pid != master]
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: not stack._alive(master), 10, "the master gone")
    done = _cli("down", own_stack)
    assert done.returncode == 0, done.stderr
    assert not any(stack._alive(pid) for pid in workers)
    assert not stack.port_open(own_stack.api_host, own_stack.api_port)


def test_each_stack_has_its_own_gunicorn_control_socket(tmp_path: Path):
    argv = _api(load_settings(env={}, data_dir=tmp_path)).argv()
    assert argv[argv.index("--control-socket") + 1] == str(tmp_path / "run" / "gunicorn.ctl")
    assert argv[argv.index("--worker-class") + 1] == "gevent"
    deep = tmp_path / ("d" * 120)
    assert "--no-control-socket" in _api(load_settings(env={}, data_dir=deep)).argv()


def test_a_dead_engine_we_started_is_started_again_with_live_restore(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The engine here is shared and stays up, so only the decision is checked: spawn
    and the engine's answer are stand-ins."""
    paths = stack.Paths(tmp_path)
    paths.make()
    (paths.run / "dockerd.pid").write_text(str(_dead_pid()))
    started: list[list[str]] = []
    monkeypatch.setattr(components, "tool", lambda name, hint: f"/usr/bin/{name}")
    monkeypatch.setattr(components, "spawn", lambda _paths, _name, argv, env=None:
                        started.append(argv) or 1)
    monkeypatch.setattr(stack.DockerComponent, "answers", lambda self: bool(started))
    outcome = stack.DockerComponent(load_settings(env={}, data_dir=tmp_path), paths).up()
    assert started and {"--live-restore", "--bridge=none", "--iptables=false"} <= set(
        started[0])
    assert "started" in outcome and "had died" in outcome


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid
