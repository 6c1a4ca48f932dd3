"""Fixtures: real Redis, S3, OpenBao and Docker, started by the project's own launcher.

The services run on test ports under a temporary data dir, so a developer's
own ``abaco up`` stack is untouched. A missing service skips the tests that need
it locally and fails them under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.settings import Settings, load_settings
from jobs.store import Store
from launcher import stack

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# ABACO_TEST_PORT_OFFSET moves every test port, so two test sessions can run side by side.
_OFFSET = int(os.environ.get("ABACO_TEST_PORT_OFFSET", "0"))
# Each service has a range of its own a thousand ports wide, so offsets below 1000 never
# put one session's service on another session's port.
TEST_PORTS = {name: port + _OFFSET for name, port in
              {"redis": 20390, "s3": 22000, "vault": 24200, "api": 27000}.items()}


def need(condition: bool, what: str) -> None:
    """Skip when a service is missing; under CI=true that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("abaco-data")


@pytest.fixture(scope="session")
def base_settings(data_dir: Path) -> Settings:
    return load_settings(env={}, data_dir=data_dir,
                         redis_url=f"redis://127.0.0.1:{TEST_PORTS['redis']}/0",
                         s3_endpoint=f"http://127.0.0.1:{TEST_PORTS['s3']}",
                         vault_addr=f"http://127.0.0.1:{TEST_PORTS['vault']}",
                         api_port=TEST_PORTS["api"], api_workers=2,
                         heartbeat_ttl_s=2.0, scheduler_tick_s=1.0, worker_idle_s=4,
                         drain_timeout_s=10,
                         sync_timeout_s=20)


@pytest.fixture(scope="session")
def services(base_settings: Settings) -> Iterator[Settings]:
    """Redis, S3 and OpenBao, started by the launcher; stopped at the end of the session."""
    paths = stack.Paths(base_settings.data_dir)
    paths.make()
    settings = stack.with_local_secrets(base_settings)
    try:
        for kind in (stack.RedisComponent, stack.S3Component, stack.VaultComponent):
            kind(settings, paths).up()
    except stack.StackError as exc:
        stack.down(settings, say=lambda _line: None)
        need(False, f"local services ({exc.message})")
    settings = stack.with_local_secrets(settings)
    yield settings
    stack.down(settings, say=lambda _line: None)


@pytest.fixture
def settings(services: Settings) -> Settings:
    """Per-test settings with a fresh key prefix, so tests never see each other's data."""
    return services.replace(prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store.from_settings(settings)


@pytest.fixture(scope="session")
def docker_client(services: Settings):  # type: ignore[no-untyped-def]
    """The Docker engine; started by the launcher (and stopped after) when none answers."""
    import docker

    try:
        stack.DockerComponent(services, stack.Paths(services.data_dir)).up()
        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        need(False, f"a Docker engine ({exc})")
    return client


@pytest.fixture(scope="session")
def images(docker_client) -> list[str]:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "images"))
    from build import build_all  # type: ignore[import-not-found]

    return build_all(docker_client)


@pytest.fixture(scope="session")
def python_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    """Debian with python3 and the Abaco SDK (agavepy): built once, reused after."""
    sys.path.insert(0, str(ROOT / "images"))
    from build import build_python  # type: ignore[import-not-found]

    return str(build_python(docker_client))


@pytest.fixture(scope="session")
def relay_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    """The Nomad runner's results relay, for runs on the Nomad double."""
    sys.path.insert(0, str(ROOT / "images"))
    from build import build_relay  # type: ignore[import-not-found]

    return str(build_relay(docker_client))


@pytest.fixture(scope="session")
def api_stack(services: Settings, images: list[str]) -> Iterator[Settings]:
    """The whole platform through the real command, ``abaco up``, on the test ports."""
    env = {**os.environ, **services.as_env()}
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "up"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0:
        pytest.fail(f"abaco up failed:\n{done.stdout}\n{done.stderr}")
    yield services
    subprocess.run([sys.executable, "-m", "launcher.cli", "down"], env=env, cwd=ROOT,
                   capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def harness(settings: Settings):  # type: ignore[no-untyped-def]
    """The real worker and scheduler with the shipped fakes (no Docker needed)."""
    from jobs.placers.memory import MemoryPlacer
    from jobs.runners.fake import FakeRunner
    from jobs.service import Platform
    from scheduler.loop import Scheduler
    from tests.harness import Harness, fast_settings

    fast = fast_settings(settings)
    platform = Platform.from_settings(fast)
    platform.logs.ensure_bucket()
    runner = FakeRunner()
    placer = MemoryPlacer(fast, platform.store, runner, platform.logs, platform.secrets)
    scheduler = Scheduler(fast, platform.store, runner, placer, platform.logs)
    yield Harness(platform, runner, scheduler)
    runner.lose_everything()  # a failed test must not leave threads waiting on a gate
    scheduler.stopping.set()
    placer.drain(2)
    scheduler.close()


@pytest.fixture
def jwt_settings(settings: Settings, tmp_path: Path) -> Settings:
    """auth = jwt, with the test tenants' public keys (tests/jwt_users.py)."""
    from tests.jwt_users import KEYS, _public_pem

    keys = tmp_path / "tenant-keys"
    keys.mkdir()
    for tenant in KEYS:
        (keys / f"{tenant}.pem").write_bytes(_public_pem(tenant))
    return settings.replace(auth="jwt", tenant_keys_dir=str(keys),
                            actor_token_key=str(tmp_path / "actor-token.pem"))


@pytest.fixture
def client(jwt_settings: Settings):  # type: ignore[no-untyped-def]
    """The Flask app under auth = jwt."""
    from api.app import create_app

    return create_app(jwt_settings).test_client()


@pytest.fixture
def platform(settings: Settings, images: list[str]):  # type: ignore[no-untyped-def]
    """The service on real Redis, S3 and OpenBao, with a bucket of its own and the test
    images built (a module may define its own ``platform``)."""
    from jobs.service import Platform

    platform = Platform.from_settings(settings.replace(s3_bucket=f"b-{settings.prefix}"))
    platform.logs.ensure_bucket()
    return platform


@pytest.fixture
def runner(platform):  # type: ignore[no-untyped-def]
    """The Docker runner on the engine the tests use."""
    from jobs.runners.docker import DockerRunner

    return DockerRunner(platform.settings)
