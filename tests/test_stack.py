"""The launcher: one-line errors, reuse, and data that survives restarts.

These tests start their own Redis and OpenBao on other ports, in their own data
dir, so that killing them does not disturb the shared test services.
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

from jobs import stack
from jobs.secrets import SecretStore
from jobs.settings import Settings, load_settings
from jobs.store import Store
from tests.conftest import ROOT


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
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "up"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    error = done.stderr.strip()
    assert "\n" not in error
    assert f"port {listener}" in error and "redis" in error and "ABACO_REDIS_URL" in error
    assert "[1/6] redis" in done.stdout, "progress is shown"


def _own(tmp_path: Path, services: Settings) -> Settings:
    return load_settings(env={}, data_dir=tmp_path, redis_url="redis://127.0.0.1:16391/0",
                         vault_addr="http://127.0.0.1:18210", s3_endpoint=services.s3_endpoint)


def _restart(component: stack.Component, settings: Settings) -> None:
    pid = stack.pid_alive(component.paths, component.name)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert "started" in type(component)(settings, component.paths).up()


def test_queued_messages_survive_a_redis_crash(tmp_path: Path, services: Settings):
    settings = stack.with_local_secrets(_own(tmp_path, services))
    paths = stack.Paths(tmp_path)
    redis_component = stack.RedisComponent(settings, paths)
    try:
        assert "started" in redis_component.up()
        assert "reused" in stack.RedisComponent(settings, paths).up()
        store = Store.from_settings(settings)
        store.create_actor({"id": "a1", "tenant": "T", "image": "img"})
        store.post_message({"id": "e1", "tenant": "T", "actor_id": "a1",
                            "status": "SUBMITTED"})
        _restart(redis_component, settings)
        store = Store.from_settings(settings)
        assert store.queued_ids("T", "a1") == ["e1"]
        assert store.r.xlen(store.keys.inbox("T", "a1")) == 1
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
