"""Execution logs and final records in S3 (MinIO, localbucket, moto...).

Layout, readable in any S3 browser::

    {bucket}/{tenant}/{actor_id}/{execution_id}/logs.txt        text/plain
    {bucket}/{tenant}/{actor_id}/{execution_id}/execution.json  the final record

Logs longer than ``max_log_bytes`` are cut and end with an explicit marker line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from jobs.errors import BackendUnavailable, NotFound
from jobs.settings import Settings

TRUNCATION_MARKER = "\n[abaco: log truncated at {limit} bytes]\n"
_UNREACHABLE = (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectTimeoutError)


def truncate(data: bytes, limit: int) -> bytes:
    """Cut ``data`` to ``limit`` bytes plus a marker line that says so."""
    if len(data) <= limit:
        return data
    return data[:limit] + TRUNCATION_MARKER.format(limit=limit).encode()


class LogStore:
    """Reads and writes execution logs and records in one bucket."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.max_bytes = settings.max_log_bytes
        self.s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key.reveal(),
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"}),
        )

    @staticmethod
    def prefix(tenant: str, actor_id: str, execution_id: str) -> str:
        return f"{tenant}/{actor_id}/{execution_id}/"

    def ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            self.s3.create_bucket(Bucket=self.bucket)
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"s3 is unavailable: {exc}") from exc

    def put(self, tenant: str, actor_id: str, execution_id: str, logs: bytes,
            record: Mapping[str, Any]) -> None:
        base = self.prefix(tenant, actor_id, execution_id)
        try:
            self.s3.put_object(Bucket=self.bucket, Key=base + "logs.txt",
                               Body=truncate(logs, self.max_bytes),
                               ContentType="text/plain; charset=utf-8")
            self.s3.put_object(Bucket=self.bucket, Key=base + "execution.json",
                               Body=json.dumps(record, indent=2).encode(),
                               ContentType="application/json")
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"s3 is unavailable: {exc}") from exc

    def get_logs(self, tenant: str, actor_id: str, execution_id: str) -> bytes:
        key = self.prefix(tenant, actor_id, execution_id) + "logs.txt"
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            raise NotFound(f"no logs stored for execution {execution_id}") from exc
        except _UNREACHABLE as exc:
            raise BackendUnavailable(f"s3 is unavailable: {exc}") from exc
