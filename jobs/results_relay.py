"""The results relay: the sidecar task that gives a Nomad run Abaco's container contract.

An execution on Nomad runs on some node the worker cannot reach with a Unix
socket, so its allocation carries this relay as a prestart sidecar sharing the
allocation directory (``/alloc``) with the actor task:

- it writes the binary message, if the run has one (base64 in its environment,
  ``ABACO_PAYLOAD_B64``), to ``/alloc/_abaco_binary_data``, which the actor task
  mounts at ``/_abaco_binary_data``;
- it binds the results socket ``/alloc/_abaco_results.sock``, which the actor task
  mounts at ``/_abaco_results.sock``, and prints ``ready``: the worker, following
  this task's stdout through Nomad's log API, only then writes the actor task's
  environment, whose template holds the actor's start, so the socket always
  exists before the actor's container mounts it;
- each datagram then becomes one line ``result <base64>`` on stdout, in order,
  which the worker turns back into datagrams on its own results socket;
- on SIGTERM or SIGINT (Nomad stops sidecars once the actor task ends) it relays
  what is still queued and exits.

Standard library only, so it runs in the platform image or any Python image.
"""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import sys
from pathlib import Path

ALLOC_DIR = Path(os.environ.get("NOMAD_ALLOC_DIR", "/alloc"))
SOCKET_NAME = "_abaco_results.sock"
PAYLOAD_NAME = "_abaco_binary_data"
READY = "ready"
PREFIX = "result "
MAX_DATAGRAM = 4 * 1024 * 1024


def main() -> None:
    write_payload(ALLOC_DIR / PAYLOAD_NAME, os.environ.get("ABACO_PAYLOAD_B64", ""))
    sock = bind(ALLOC_DIR / SOCKET_NAME)
    wake_r, wake_w = os.pipe()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: os.write(wake_w, b"x"))
    emit(READY)
    relay(sock, wake_r)


def write_payload(path: Path, encoded: str) -> None:
    """The binary message as a plain file (readable like Abaco's FIFO by the actor's
    user); absent when the run has none."""
    if not encoded:
        return
    path.write_bytes(base64.b64decode(encoded))
    path.chmod(0o644)


def bind(path: Path) -> socket.socket:
    if path.exists() and not path.is_socket():
        sys.exit(f"{path} exists and is not a socket: the actor task started first")
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o666)  # the actor runs as another user
    return sock


def relay(sock: socket.socket, wake_r: int) -> None:
    """Every datagram to stdout until woken by a signal, then what is left queued."""
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if sock.fileno() in ready:
            emit(PREFIX + base64.b64encode(sock.recv(MAX_DATAGRAM)).decode())
        elif wake_r in ready:
            break
    sock.setblocking(False)
    while True:
        try:
            emit(PREFIX + base64.b64encode(sock.recv(MAX_DATAGRAM)).decode())
        except BlockingIOError:
            return


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
