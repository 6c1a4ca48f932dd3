"""The local stack's S3 endpoint: pys3local's server, which refuses any request not
signed (AWS SigV4, or V2) with the one key it is given.

Run by the launcher as ``python -m launcher.s3server --host H --port P DATA_DIR``, with
the key in ``ABACO_S3_ACCESS_KEY`` and ``ABACO_S3_SECRET_KEY``: the environment, not
argv, which any local user can read in ``ps``. pys3local's own ``serve`` command takes
the secret only as an argument, prints it, and keeps object metadata in a database
under ``~/.config`` shared by every server of the user; here all of it, the objects
(``DATA_DIR/{bucket}/objects/{key}``) and their metadata (``DATA_DIR/.metadata.db``),
is under DATA_DIR, owner-only.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import uvicorn
from pys3local import server
from pys3local.metadata_db import MetadataDB
from pys3local.providers.local import LocalStorageProvider

_parse_path = server._parse_path


def _path_style(path: str, host: str, hostname: str) -> tuple[str | None, str | None]:
    """Buckets are always the first path segment (the platform's clients use path-style
    URLs); pys3local would take any Host containing "localhost", such as
    ``localhost:9000``, for a virtual-hosted bucket name."""
    return _parse_path(path, "", hostname)


class CloseAfterErrors:
    """ASGI wrapper: every error reply closes its connection. A PUT refused before its
    body was read (a bad signature) may have no body following at all (a client that
    sent ``Expect: 100-continue`` and got the refusal instead), and uvicorn would take
    the client's next request on that connection for the missing body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, sending)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launcher.s3server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    access_key = os.environ.get("ABACO_S3_ACCESS_KEY", "")
    secret_key = os.environ.get("ABACO_S3_SECRET_KEY", "")
    if not access_key or not secret_key:
        parser.error("ABACO_S3_ACCESS_KEY and ABACO_S3_SECRET_KEY must be set")
    os.umask(0o077)  # objects, folders and the metadata database: owner only
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    server._parse_path = _path_style
    provider = LocalStorageProvider(
        args.data_dir, metadata_db=MetadataDB(args.data_dir / ".metadata.db"))
    app = server.create_s3_app(provider, access_key=access_key, secret_key=secret_key,
                               region=os.environ.get("ABACO_S3_REGION", "us-east-1"),
                               no_auth=False, allow_bucket_creation=True)
    uvicorn.run(CloseAfterErrors(app), host=args.host, port=args.port, log_level="warning",
                server_header=False, access_log=False)


if __name__ == "__main__":
    main()
