"""Abaco's and Tapis's own SDKs against the platform under ``auth = jwt``: every actors
operation of agavepy 0.9.5 (over HTTPS on port 443 with no port in the URL, which it
insists on, through a TLS listener of the test's own on loopback) and of tapipy
(``/v3/actors``, ``X-Tapis-Token``, ``/v3/tenants`` and ``/v3/sites``). The SDKs live in
their own venv (``.venv-clients``, made by ``make test``): their pinned dependencies
clash with the test tools'.

The API serves real HTTP in this process; the real scheduler loop places workers as
threads on the shipped fake engine, so executions complete.
"""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from werkzeug.serving import make_server

from jobs.settings import Settings
from tests.conftest import ROOT
from tests.harness import fast_settings
from tests.jwt_users import KEYS, token

CLIENT_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SUITES = Path(__file__).parent / "clients"
# Abaco reserves these to admins; a plain user's SDK call is refused (403), as there.
ADMIN_ONLY = {"addWorker", "manage_worker_pool_size"}
# agavepy 0.9.5 cannot read this reply from any server: its spec names a response model,
# ActorMessagesDeleteResponse, that its own models lack (a KeyError in the SDK).
SDK_BROKEN = {"deleteMessages": "ActorMessagesDeleteResponse"}


def _self_signed(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def platform_urls(services: Settings, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, str]]:
    """(plain URL, HTTPS URL) of one platform under auth = jwt."""
    if not CLIENT_PYTHON.exists():
        pytest.skip("no client SDK venv: `make test` makes .venv-clients (tapipy, agavepy)")
    from api.app import create_app
    from jobs.placers.memory import MemoryPlacer
    from jobs.runners.fake import FakeRunner
    from jobs.service import Platform
    from scheduler.loop import Scheduler
    from tests.jwt_users import _public_pem

    work = tmp_path_factory.mktemp("clients")
    keys = work / "tenant-keys"
    keys.mkdir()
    (keys / "DEV.pem").write_bytes(_public_pem("DEV"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    plain = make_server("127.0.0.1", 0, lambda e, s: app(e, s), threaded=True)
    settings = fast_settings(services).replace(
        prefix="clients", auth="jwt", tenant_keys_dir=str(keys),
        actor_token_key=str(work / "actor-token.pem"),
        api_public_url=f"http://127.0.0.1:{plain.server_port}")
    platform = Platform.from_settings(settings)
    platform.logs.ensure_bucket()
    app = create_app(settings, platform)
    try:  # agavepy authenticates only to a host without a port in its URL: 443 it is
        tls = make_server("127.0.0.1", 443, app, threaded=True,
                          ssl_context=_self_signed(work))
    except OSError as exc:
        plain.server_close()
        pytest.skip(f"agavepy needs https://127.0.0.1 on port 443, which is taken or not "
                    f"ours to bind ({exc})")
    runner = FakeRunner()
    placer = MemoryPlacer(settings, platform.store, runner, platform.logs, platform.secrets)
    scheduler = Scheduler(settings, platform.store, runner, placer, platform.logs)
    threads = [threading.Thread(target=t, daemon=True)
               for t in (plain.serve_forever, tls.serve_forever, scheduler.run)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{plain.server_port}", "https://127.0.0.1"
    finally:
        scheduler.stopping.set()
        runner.lose_everything()
        placer.drain(2)
        plain.shutdown()
        tls.shutdown()


def _run_suite(name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(CLIENT_PYTHON), str(SUITES / name), *args],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _failures(outcomes: dict[str, Any]) -> dict[str, str]:
    return {name: o["error"] for name, o in outcomes.items()
            if not o["ok"] and name not in ADMIN_ONLY and
            SDK_BROKEN.get(name, "\0") not in o["error"]}


def _tapis_token(user: str, tenant: str = "DEV") -> str:
    now = int(time.time())
    claims = {"jti": f"{user}-{now}", "iss": "http://127.0.0.1/v3/tokens", "sub":
              f"{user}@{tenant}", "tapis/tenant_id": tenant, "tapis/username": user,
              "tapis/token_type": "access", "tapis/account_type": "user",
              "tapis/delegation": False, "tapis/delegation_sub": None,
              "tapis/client_id": None, "tapis/grant_type": "password",
              "iat": now, "exp": now + 3600}
    return jwt.encode(claims, KEYS[tenant], algorithm="RS256")


def test_every_agavepy_actors_operation(platform_urls: tuple[str, str]):
    _plain, https = platform_urls
    outcomes = _run_suite("agavepy_suite.py", https, token("alice"))
    assert not _failures(outcomes), _failures(outcomes)
    assert outcomes["add"]["value"]["owner"] == "alice"
    assert outcomes["getExecution"]["value"]["status"] == "COMPLETE"
    assert "executionId" in outcomes["sendBinaryMessage"]["value"]
    assert outcomes["getAlias"]["value"]["alias"] == "agavepy-alias"
    assert all(not outcomes[name]["ok"] and "403" in outcomes[name]["error"]
               for name in ADMIN_ONLY & set(outcomes))


def test_every_tapipy_actors_operation(platform_urls: tuple[str, str]):
    plain, _https = platform_urls
    outcomes = _run_suite("tapipy_suite.py", plain, _tapis_token("alice"))
    assert not _failures(outcomes), _failures(outcomes)
    actor = outcomes["get_actor"]["value"]
    assert actor["owner"] == "alice" and "default_environment" in actor, \
        "snake_case on /v3 whatever the case setting"
    links = actor["_links"]
    assert str(links.get("self", links)).find(f"/v3/actors/{actor['id']}") >= 0, links
    assert outcomes["get_execution"]["value"]["status"] == "COMPLETE"
    assert outcomes["search_database"]["value"]["_metadata"]["total_count"] >= 1
