"""The S3 log store against real S3 endpoints: pys3local (the default) and moto's server.

moto also runs with authentication on (``INITIAL_NO_AUTH_ACTION_COUNT``), for the
real answers to bad keys. The 5xx and race cases use a loopback fake that answers
with S3's documented XML error bodies, recording every request it got.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from jobs import logstore as logstore_module
from jobs.errors import BackendMisconfigured, BackendUnavailable, NotFound
from jobs.logstore import TRUNCATION_MARKER, LogStore, truncate
from jobs.settings import Secret, Settings
from tests.loopback import LoopbackServer, QuietHandler
from tests.waits import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _moto(env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    child = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "AWS_ACCESS_KEY_ID": "x", **env})
    try:
        wait_until(lambda: _connects(port), 30, "moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    yield from _moto({})


@pytest.fixture(scope="module")
def moto_auth() -> Iterator[tuple[str, dict[str, str]]]:
    """moto checking signatures and IAM policies after its first two (setup) requests:
    one IAM user with an access key and no policy at all."""
    for endpoint in _moto({"INITIAL_NO_AUTH_ACTION_COUNT": "2"}):
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="abaco-nopolicy")
        key = iam.create_access_key(UserName="abaco-nopolicy")["AccessKey"]
        yield endpoint, {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def _store(settings: Settings, **changes: object) -> LogStore:
    return LogStore(settings.replace(**{"s3_bucket": f"logs-{settings.prefix}",
                                        "max_log_bytes": 64, **changes}))


@pytest.fixture(params=["localbucket", "moto"])
def endpoint(request: pytest.FixtureRequest, settings: Settings) -> str:
    if request.param == "moto":
        return str(request.getfixturevalue("moto_endpoint"))
    return settings.s3_endpoint


@pytest.fixture
def logstore(endpoint: str, settings: Settings) -> LogStore:
    store = _store(settings, s3_endpoint=endpoint)
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


# -- the bucket is the platform's own ------------------------------------------------

def test_put_creates_a_missing_bucket(endpoint: str, settings: Settings):
    store = _store(settings, s3_endpoint=endpoint, s3_bucket=f"new-{uuid.uuid4().hex[:12]}")
    with pytest.raises(BackendMisconfigured, match="NoSuchBucket"):
        store.get_logs("T", "a1", "e1")  # truly missing before the put
    store.put("T", "a1", "e1", b"first run\n", {"id": "e1"})
    assert store.get_logs("T", "a1", "e1") == b"first run\n"


def test_ensure_bucket_can_run_at_every_start(endpoint: str, settings: Settings):
    store = _store(settings, s3_endpoint=endpoint, s3_bucket=f"new-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket()
    store.ensure_bucket()
    store.put("T", "a1", "e1", b"ok\n", {"id": "e1"})
    assert store.get_logs("T", "a1", "e1") == b"ok\n"


def test_missing_log_object_is_not_found(logstore: LogStore):
    with pytest.raises(NotFound, match="no logs stored for execution e404"):
        logstore.get_logs("T", "a1", "e404")


# -- S3 refusing our keys (moto with authentication on) -------------------------------

@pytest.mark.parametrize(("keys", "code"), [
    ("bogus", "InvalidAccessKeyId"),
    ("wrong-secret", "SignatureDoesNotMatch"),
    ("no-policy", "AccessDenied"),
])
def test_refused_credentials_say_so(moto_auth: tuple[str, dict[str, str]],
                                    settings: Settings, keys: str, code: str):
    endpoint, key = moto_auth
    key_id, secret = {"bogus": ("AKIANOSUCHKEY0000000", "whatever-secret-1"),
                      "wrong-secret": (key["id"], "not-the-secret-2"),
                      "no-policy": (key["id"], key["secret"])}[keys]
    store = _store(settings, s3_endpoint=endpoint, s3_access_key=key_id,
                   s3_secret_key=Secret(secret))
    started = time.monotonic()
    with pytest.raises(BackendMisconfigured) as put_error:
        store.put("T", "a1", "e1", b"x", {"id": "e1"})
    assert time.monotonic() - started < 2, "refused credentials must not be retried"
    message = put_error.value.message
    assert f"s3 refused our credentials ({code}, HTTP 403) for bucket {store.bucket}" in message
    assert "s3_secret_key" in message and secret not in message
    with pytest.raises(BackendMisconfigured, match="refused our credentials"):
        store.get_logs("T", "a1", "e1")
    with pytest.raises(BackendMisconfigured, match="refused our credentials"):
        store.ensure_bucket()


# -- S3 failing (a loopback fake answering S3's documented error bodies) --------------

S3_ERRORS = {  # status, code, message: as S3 sends them
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Reduce your request rate."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket "
                                     "succeeded and you already own it."),
    "AccessDenied": (403, "Access Denied"),
}
Reply = tuple[int, str, bytes]  # status, content type, body


def s3_error(code: str) -> Reply:
    status, text = S3_ERRORS[code]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{text}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>")
    return status, "application/xml", body.encode()


OK: Reply = (200, "application/xml", b"")


class FakeS3:
    """Answers each request with ``answer(method, path)``; records (method, path)."""

    def __init__(self, answer: Callable[[str, str], Reply]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str]] = []
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                fake.seen.append((self.command, path))
                status, kind, body = fake.answer(self.command, path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.http = LoopbackServer(Handler)
        self.endpoint = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def fake_s3() -> Iterator[Callable[[Callable[[str, str], Reply]], FakeS3]]:
    fakes: list[FakeS3] = []

    def start(answer: Callable[[str, str], Reply]) -> FakeS3:
        fakes.append(FakeS3(answer))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.close()


@pytest.mark.parametrize("code", ["InternalError", "SlowDown", "ServiceUnavailable"])
def test_s3_5xx_is_unavailable_after_bounded_retries(fake_s3, settings: Settings, code: str):
    fake = fake_s3(lambda _method, _path: s3_error(code))
    store = _store(settings, s3_endpoint=fake.endpoint)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        store.put("T", "a1", "e1", b"x", {"id": "e1"})
    elapsed = time.monotonic() - started
    assert sum(logstore_module.PAUSES_S) <= elapsed < 5  # it paused between attempts
    assert not isinstance(caught.value, BackendMisconfigured)
    status = S3_ERRORS[code][0]
    assert f"s3 failed ({code}, HTTP {status}) for bucket {store.bucket}" in caught.value.message
    assert fake.seen == [("PUT", f"/{store.bucket}/T/a1/e1/logs.txt")] * logstore_module.ATTEMPTS
    with pytest.raises(BackendUnavailable, match=f"s3 failed \\({code}"):
        store.get_logs("T", "a1", "e1")
    with pytest.raises(BackendUnavailable, match=f"s3 failed \\(HTTP {status}\\)"):
        store.ensure_bucket()  # a HEAD: S3 sends the status only, no error body


def test_no_attempt_starts_after_the_retry_budget(fake_s3, settings: Settings):
    fake = fake_s3(lambda _method, _path: s3_error("SlowDown"))
    store = _store(settings, s3_endpoint=fake.endpoint)
    store.retry_budget_s = 0.1  # less than the first pause
    with pytest.raises(BackendUnavailable, match="SlowDown"):
        store.put("T", "a1", "e1", b"x", {"id": "e1"})
    assert len(fake.seen) == 1


def test_a_passing_s3_hiccup_is_retried(fake_s3, settings: Settings):
    answers = [s3_error("SlowDown"), s3_error("InternalError")]
    fake = fake_s3(lambda _method, _path: answers.pop(0) if answers else OK)
    store = _store(settings, s3_endpoint=fake.endpoint)
    store.put("T", "a1", "e1", b"x", {"id": "e1"})
    logs, record = f"/{store.bucket}/T/a1/e1/logs.txt", f"/{store.bucket}/T/a1/e1/execution.json"
    assert fake.seen == [("PUT", logs)] * 3 + [("PUT", record)]


def test_a_bare_502_from_a_proxy_is_unavailable(fake_s3, settings: Settings):
    fake = fake_s3(lambda _method, _path: (502, "text/html", b"<html>Bad Gateway</html>"))
    store = _store(settings, s3_endpoint=fake.endpoint)
    with pytest.raises(BackendUnavailable, match=r"s3 failed \(HTTP 502\)") as caught:
        store.put("T", "a1", "e1", b"x", {"id": "e1"})
    assert not isinstance(caught.value, BackendMisconfigured)


def test_bucket_created_meanwhile_by_another_process_is_fine(fake_s3, settings: Settings):
    answers = [s3_error("NoSuchBucket"), s3_error("BucketAlreadyOwnedByYou")]
    fake = fake_s3(lambda _method, _path: answers.pop(0) if answers else OK)
    store = _store(settings, s3_endpoint=fake.endpoint)
    store.put("T", "a1", "e1", b"x", {"id": "e1"})
    logs, record = f"/{store.bucket}/T/a1/e1/logs.txt", f"/{store.bucket}/T/a1/e1/execution.json"
    assert fake.seen == [("PUT", logs), ("PUT", f"/{store.bucket}"), ("PUT", logs),
                         ("PUT", record)]


def test_bucket_that_cannot_be_created_says_why(fake_s3, settings: Settings):
    fake = fake_s3(lambda method, path: s3_error(
        "AccessDenied" if path == f"/{store.bucket}" else "NoSuchBucket"))
    store = _store(settings, s3_endpoint=fake.endpoint)
    with pytest.raises(BackendMisconfigured, match="refused our credentials \\(AccessDenied"):
        store.put("T", "a1", "e1", b"x", {"id": "e1"})
    assert len(fake.seen) == 2


def test_s3_down_is_unavailable_quickly(settings: Settings):
    store = _store(settings, s3_endpoint=f"http://127.0.0.1:{_free_port()}")
    for call in (lambda: store.put("T", "a1", "e1", b"x", {"id": "e1"}),
                 lambda: store.get_logs("T", "a1", "e1"), store.ensure_bucket):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="s3 is unreachable for bucket") as caught:
            call()
        assert time.monotonic() - started < 5
        assert not isinstance(caught.value, BackendMisconfigured)
