"""The S3 log store against two real S3 endpoints: localbucket (the default) and moto."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.logstore import TRUNCATION_MARKER, LogStore, truncate
from jobs.settings import Settings
from tests.waits import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint():
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    child = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "AWS_ACCESS_KEY_ID": "x"})
    try:
        wait_until(lambda: _connects(port), 30, "moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["localbucket", "moto"])
def logstore(request, settings: Settings) -> LogStore:
    if request.param == "moto":
        settings = settings.replace(s3_endpoint=request.getfixturevalue("moto_endpoint"))
    store = LogStore(settings.replace(s3_bucket=f"logs-{settings.prefix}", max_log_bytes=64))
    store.ensure_bucket()
    return store


def test_logs_and_record_land_under_tenant_actor_execution(logstore: LogStore):
    logstore.put("T", "a1", "e1", b"hello\n", {"id": "e1", "status": "COMPLETE"})
    assert logstore.get_logs("T", "a1", "e1") == b"hello\n"
    listed = logstore.s3.list_objects_v2(Bucket=logstore.bucket, Prefix="T/a1/e1/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "T/a1/e1/execution.json", "T/a1/e1/logs.txt"]
    body = logstore.s3.get_object(Bucket=logstore.bucket, Key="T/a1/e1/execution.json")
    assert b'"COMPLETE"' in body["Body"].read()


def test_long_logs_are_cut_with_a_marker(logstore: LogStore):
    logstore.put("T", "a1", "e2", b"x" * 500, {"id": "e2"})
    stored = logstore.get_logs("T", "a1", "e2")
    assert stored.startswith(b"x" * 64)
    assert stored.endswith(TRUNCATION_MARKER.format(limit=64).encode())


def test_truncate_leaves_short_logs_alone():
    assert truncate(b"abc", 3) == b"abc"
