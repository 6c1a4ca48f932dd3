"""Execution logs and final records in S3 (MinIO, localbucket, moto...).

Layout, readable in any S3 browser::

    {bucket}/{tenant}/{actor_id}/{execution_id}/logs.txt        text/plain
    {bucket}/{tenant}/{actor_id}/{execution_id}/execution.json  the final record

Logs longer than ``max_log_bytes`` are cut and end with an explicit marker line.

Failures never leave this module as botocore exceptions:

- ``NotFound``: only a missing log object on read.
- ``BackendMisconfigured`` (a ``BackendUnavailable``): S3 answers but refuses us —
  bad keys (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``), ``AccessDenied``, a
  missing bucket on read, any other 4xx.
- ``BackendUnavailable``: S3 unreachable, timing out, 5xx or throttling.

The bucket is created on demand: ``put`` creates it on ``NoSuchBucket`` and tries
again, so a fresh MinIO (docker-compose, Nomad) needs no setup step. Transient
failures are retried here, a bounded number of times (botocore's own retries are
off, so the two never multiply).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from jobs.errors import BackendMisconfigured, BackendUnavailable, NotFound
from jobs.settings import Settings
from jobs.tokens import redact_tokens

LOG = logging.getLogger("abaco.logstore")
T = TypeVar("T")

TRUNCATION_MARKER = "\n[abaco: log truncated at {limit} bytes]\n"
# Attempts per S3 request, the pauses between them, and the time after which no new
# attempt starts: a down S3 costs a caller at most about RETRY_BUDGET_S plus one
# request's timeouts.
ATTEMPTS = 3
PAUSES_S = (0.2, 0.6)
RETRY_BUDGET_S = 4.0
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5

_CREDENTIAL_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
    "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
    "InvalidSecurity", "MissingSecurityHeader", "AuthorizationHeaderMalformed",
    "Unauthorized", "Forbidden"})
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "ThrottledException", "RequestThrottled", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "OperationAborted"})
_BUCKET_TAKEN = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
_UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
_S3Error = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def truncate(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to ``limit`` bytes plus a marker line that says so."""
    if len(data) <= limit:
        return data
    return data[:limit] + TRUNCATION_MARKER.format(limit=limit).encode()


def _code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "")
    return ""


def _status(exc: BaseException) -> int:
    if isinstance(exc, botocore.exceptions.ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def _missing_bucket(exc: BaseException) -> bool:
    return _code(exc) == "NoSuchBucket"


def transient(exc: BaseException) -> bool:
    """True for failures worth another attempt: unreachable, timeouts, 5xx, throttling."""
    if isinstance(exc, _UNREACHABLE):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        return _code(exc) in _TRANSIENT_CODES or _status(exc) >= 500 or _status(exc) == 429
    return False


class LogStore:
    """Reads and writes execution logs and records in one bucket."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.endpoint = settings.s3_endpoint
        self.region = settings.s3_region
        self.max_bytes = settings.max_log_bytes
        self.retry_budget_s = RETRY_BUDGET_S
        self._pause = threading.Event()  # never set: wait() is an interruptible sleep
        self.s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key.reveal(),
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    @staticmethod
    def prefix(tenant: str, actor_id: str, execution_id: str) -> str:
        return f"{tenant}/{actor_id}/{execution_id}/"

    # -- public -------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; safe at every process start."""
        deadline = time.monotonic() + self.retry_budget_s
        try:
            self._retrying(lambda: self.s3.head_bucket(Bucket=self.bucket), deadline)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) != 404 and not _missing_bucket(exc):
                raise self._domain_error(exc, "checking the bucket") from exc
            try:
                self._create_bucket(deadline)
            except _S3Error as create_exc:
                raise self._domain_error(create_exc, "creating the bucket") from create_exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._domain_error(exc, "checking the bucket") from exc

    def put(self, tenant: str, actor_id: str, execution_id: str, logs: bytes,
            record: Mapping[str, Any]) -> None:
        """Store the logs (execution tokens masked) and the final record; the bucket is
        created when missing."""
        base = self.prefix(tenant, actor_id, execution_id)
        objects = [
            (base + "logs.txt", truncate(redact_tokens(logs), self.max_bytes),
             "text/plain; charset=utf-8"),
            (base + "execution.json", json.dumps(record, indent=2).encode(),
             "application/json"),
        ]
        deadline = time.monotonic() + self.retry_budget_s
        try:
            for key, body, content_type in objects:
                self._put_object(key, body, content_type, deadline)
        except _S3Error as exc:
            raise self._domain_error(exc, f"storing the logs of execution {execution_id}") \
                from exc

    def get_logs(self, tenant: str, actor_id: str, execution_id: str) -> bytes:
        """The stored logs; ``NotFound`` when none were stored for this execution."""
        key = self.prefix(tenant, actor_id, execution_id) + "logs.txt"
        deadline = time.monotonic() + self.retry_budget_s

        def read() -> bytes:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return body

        try:
            return self._retrying(read, deadline)
        except _S3Error as exc:
            if _code(exc) == "NoSuchKey" or (_status(exc) == 404 and not _missing_bucket(exc)):
                raise NotFound(f"no logs stored for execution {execution_id}") from exc
            raise self._domain_error(exc, f"reading the logs of execution {execution_id}") \
                from exc

    def delete(self, tenant: str, actor_id: str, execution_id: str,
               logs_only: bool = False) -> None:
        """Remove the logs (and, unless ``logs_only``, the stored record); objects already
        gone are fine."""
        base = self.prefix(tenant, actor_id, execution_id)
        keys = [base + "logs.txt"] + ([] if logs_only else [base + "execution.json"])
        deadline = time.monotonic() + self.retry_budget_s
        for key in keys:
            try:
                self._retrying(lambda k=key: self.s3.delete_object(  # type: ignore[misc]
                    Bucket=self.bucket, Key=k), deadline)
            except _S3Error as exc:
                if _code(exc) in ("NoSuchKey", "NoSuchBucket") or _status(exc) == 404:
                    continue
                raise self._domain_error(exc, f"deleting the logs of {execution_id}") from exc

    # -- internals ----------------------------------------------------------------
    def _put_object(self, key: str, body: bytes, content_type: str, deadline: float) -> None:
        def put() -> None:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                               ContentType=content_type)

        try:
            self._retrying(put, deadline)
        except botocore.exceptions.ClientError as exc:
            if not _missing_bucket(exc):
                raise
            LOG.warning("s3 bucket %s does not exist; creating it", self.bucket)
            self._create_bucket(deadline)
            self._retrying(put, deadline)

    def _create_bucket(self, deadline: float) -> None:
        extra: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._retrying(lambda: self.s3.create_bucket(Bucket=self.bucket, **extra), deadline)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in _BUCKET_TAKEN:  # someone else created it meanwhile: fine
                raise

    def _retrying(self, call: Callable[[], T], deadline: float) -> T:
        """``call()``, again after a short pause on transient failures, within bounds."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call()
            except _S3Error as exc:
                pause = PAUSES_S[min(attempt, len(PAUSES_S)) - 1]
                if (attempt == ATTEMPTS or not transient(exc)
                        or time.monotonic() + pause > deadline):
                    raise
                LOG.info("s3 attempt %d failed (%s); retrying in %.1f s", attempt,
                         _code(exc) or type(exc).__name__, pause)
                self._pause.wait(pause)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _domain_error(self, exc: BaseException, doing: str) -> BackendUnavailable:
        """The domain error for a botocore failure, with a message saying what it is."""
        where = f"for bucket {self.bucket} at {self.endpoint} while {doing}"
        if isinstance(exc, _UNREACHABLE):
            return BackendUnavailable(f"s3 is unreachable {where}: {exc}")
        if isinstance(exc, (botocore.exceptions.NoCredentialsError,
                            botocore.exceptions.PartialCredentialsError)):
            return BackendMisconfigured(
                f"s3 credentials are missing {where}; set s3_access_key and s3_secret_key")
        if not isinstance(exc, botocore.exceptions.ClientError):
            return BackendUnavailable(f"s3 client failed {where}: {type(exc).__name__}: {exc}")
        code, status = _code(exc), _status(exc)
        what = f"{code}, HTTP {status}" if code and code != str(status) else f"HTTP {status}"
        said = str(exc.response.get("Error", {}).get("Message") or "")[:200]
        said = f": {said}" if said and said != code else ""
        if code in _CREDENTIAL_CODES or status in (401, 403):
            return BackendMisconfigured(
                f"s3 refused our credentials ({what}) {where}{said}; "
                "check s3_access_key, s3_secret_key and the bucket's policy")
        if _missing_bucket(exc):
            return BackendMisconfigured(f"s3 bucket does not exist (NoSuchBucket) {where}")
        if transient(exc):
            return BackendUnavailable(f"s3 failed ({what}) {where}{said}")
        return BackendMisconfigured(f"s3 rejected the request ({what}) {where}{said}")
