"""The local stack's S3 endpoint checks credentials: unsigned requests and requests
signed with a wrong key are refused, the right key works. The endpoint is started by
the launcher's own S3 component, on a port and in a data dir of its own."""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from jobs.settings import Secret, Settings, load_settings
from launcher import stack
from tests.conftest import TEST_PORTS, need
from tests.loopback import LoopbackServer, QuietHandler

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Our S3 endpoint, started by the launcher; the settings hold its generated key."""
    data_dir = tmp_path_factory.mktemp("s3-security")
    settings = stack.with_local_secrets(load_settings(
        env={}, data_dir=data_dir, s3_endpoint=f"http://127.0.0.1:{TEST_PORTS['s3'] + 20}"))
    need(importlib.util.find_spec("pys3local") is not None, "pys3local")
    try:  # any other failure to start fails: it may be the check refusing an open S3
        assert "started" in stack.S3Component(settings, stack.Paths(data_dir)).up()
        yield settings
    finally:
        stack.down(settings, say=lambda _line: None)


def _client(settings: Settings, secret: str | None = None,
            access_key: str | None = None) -> Any:
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint, region_name=settings.s3_region,
        aws_access_key_id=access_key or settings.s3_access_key,
        aws_secret_access_key=secret or settings.s3_secret_key.reveal(),
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1}))


def _unsigned(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with _DIRECT.open(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _stored(settings: Settings, body: bytes) -> str:
    """Put an object with the right key; its key."""
    key = f"T/a1/{uuid.uuid4().hex}/logs.txt"
    _client(settings).put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
    return key


def _exists(settings: Settings, key: str) -> bool:
    try:
        _client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
        return True
    except botocore.exceptions.ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise


# -- without a signature ---------------------------------------------------------------

@pytest.mark.parametrize("query", ["", "?list-type=2", "?list-type=2&prefix=T%2F"])
def test_an_unsigned_bucket_listing_is_refused(s3: Settings, query: str):
    _stored(s3, b"tenant T's logs\n")
    status, body = _unsigned(f"{s3.s3_endpoint}/{s3.s3_bucket}{query}")
    assert status == 403
    assert b"AccessDenied" in body and b"T/a1/" not in body


def test_an_unsigned_listing_of_the_buckets_is_refused(s3: Settings):
    status, body = _unsigned(f"{s3.s3_endpoint}/")
    assert status == 403 and s3.s3_bucket.encode() not in body


def test_an_unsigned_get_of_an_object_is_refused(s3: Settings):
    key = _stored(s3, b"tenant T's secret output\n")
    status, body = _unsigned(f"{s3.s3_endpoint}/{s3.s3_bucket}/{key}")
    assert status == 403
    assert b"secret output" not in body


def test_an_unsigned_put_is_refused_and_stores_nothing(s3: Settings):
    key = f"T/a1/{uuid.uuid4().hex}/logs.txt"
    status, _ = _unsigned(f"{s3.s3_endpoint}/{s3.s3_bucket}/{key}", "PUT", b"forged\n")
    assert status == 403
    assert not _exists(s3, key)


# -- signed with a wrong key -------------------------------------------------------------

WRONG_KEYS = {"wrong secret": {"secret": "not-the-secret-key"},
              "wrong key id": {"access_key": "not-abaco"}}
CALLS: dict[str, Callable[[Any, str, str], Any]] = {
    "list": lambda client, bucket, key: client.list_objects_v2(Bucket=bucket, Prefix="T/"),
    "get": lambda client, bucket, key: client.get_object(Bucket=bucket, Key=key),
    "put": lambda client, bucket, key: client.put_object(Bucket=bucket, Key=key + ".new",
                                                         Body=b"forged\n"),
    "head": lambda client, bucket, key: client.head_object(Bucket=bucket, Key=key),
    "delete": lambda client, bucket, key: client.delete_object(Bucket=bucket, Key=key),
}


@pytest.mark.parametrize("wrong", WRONG_KEYS)
@pytest.mark.parametrize("call", CALLS)
def test_a_wrong_key_is_refused(s3: Settings, wrong: str, call: str):
    key = _stored(s3, b"tenant T's logs\n")
    client = _client(s3, **WRONG_KEYS[wrong])
    for then in (call, "list"):  # the next request on the client's connection too
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            CALLS[then](client, s3.s3_bucket, key)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert _exists(s3, key), "the object is still there"
    assert not _exists(s3, key + ".new"), "nothing was stored"


# -- the right key ---------------------------------------------------------------------

def test_the_right_key_puts_and_gets(s3: Settings):
    client = _client(s3)
    key = f"T/a1/{uuid.uuid4().hex}/logs.txt"
    client.put_object(Bucket=s3.s3_bucket, Key=key, Body=b"hello\n", ContentType="text/plain")
    got = client.get_object(Bucket=s3.s3_bucket, Key=key)
    assert got["Body"].read() == b"hello\n"
    listed = client.list_objects_v2(Bucket=s3.s3_bucket, Prefix=key)
    assert [item["Key"] for item in listed["Contents"]] == [key]


def test_an_endpoint_named_localhost_works_too(s3: Settings):
    """pys3local alone would take the Host ``localhost:PORT`` for a bucket name."""
    client = _client(s3.replace(s3_endpoint=s3.s3_endpoint.replace("127.0.0.1", "localhost")))
    key = f"T/a1/{uuid.uuid4().hex}/logs.txt"
    client.put_object(Bucket=s3.s3_bucket, Key=key, Body=b"via localhost\n")
    assert client.get_object(Bucket=s3.s3_bucket, Key=key)["Body"].read() == b"via localhost\n"


def test_objects_are_owner_only_files_under_the_data_dir(s3: Settings):
    key = _stored(s3, b"kept on disk\n")
    on_disk = s3.data_dir / "s3" / s3.s3_bucket / "objects" / key
    assert on_disk.read_bytes() == b"kept on disk\n"
    assert on_disk.stat().st_mode & 0o077 == 0
    assert (s3.data_dir / "s3" / ".metadata.db").stat().st_mode & 0o077 == 0


def test_the_key_is_generated_kept_0600_and_out_of_the_command_line(s3: Settings):
    secret = s3.s3_secret_key.reveal()
    kept = s3.data_dir / "secrets" / "s3.secret"
    assert kept.read_text().strip() == secret and len(secret) >= 24
    assert kept.stat().st_mode & 0o777 == 0o600
    assert secret != "abaco-local-secret"
    pid = stack.pid_alive(stack.Paths(s3.data_dir), "s3")
    assert pid is not None
    assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert secret not in (s3.data_dir / "logs" / "s3.log").read_text()
    assert stack.with_local_secrets(s3.replace(s3_secret_key=Secret(""))).s3_secret_key \
        == secret, "the same key on every start"


# -- the launcher will not use an S3 that does not check ---------------------------------

def test_up_with_a_wrong_key_is_an_error_naming_the_key(s3: Settings):
    wrong = s3.replace(s3_secret_key=Secret("not-the-secret-key"))
    with pytest.raises(stack.StackError, match="refuses our key.*ABACO_S3_SECRET_KEY"):
        stack.S3Component(wrong, stack.Paths(s3.data_dir)).up()


def test_an_s3_answering_unsigned_requests_is_not_reused(tmp_path: Path):
    class Open(QuietHandler):
        def do_GET(self) -> None:
            body = (b'<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult>'
                    b"<Buckets></Buckets></ListAllMyBucketsResult>")
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = LoopbackServer(Open)
    try:
        settings = load_settings(env={}, data_dir=tmp_path, s3_endpoint=server.url)
        paths = stack.Paths(tmp_path)
        paths.make()
        with pytest.raises(stack.StackError, match="answers unsigned requests"):
            stack.S3Component(settings, paths).up()
    finally:
        server.close()
