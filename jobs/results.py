"""Results: what an execution hands back to its caller, one datagram at a time.

The worker binds a Unix datagram socket for each run and the runner mounts it in
the container at ``/_abaco_results.sock`` (Abaco's path, which the Abaco SDK's
``send_bytes_result`` and ``send_python_result`` write to). Each datagram is one
result of at most ``max_result_bytes``; a longer one is cut there and says so in
the execution's status message. The worker stores results in Redis in order;
``GET .../executions/{eid}/results`` takes the next unread one.

The reader blocks in ``select`` on the socket and on a wake-up pipe, so closing
it never waits on a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path

LOG = logging.getLogger("abaco.results")
CONTAINER_PATH = "/_abaco_results.sock"
UNIX_PATH_MAX = 107  # sun_path less its closing NUL


class ResultsSocket:
    """One run's results socket on the host; ``on_result`` gets each datagram."""

    def __init__(self, path: Path, on_result: Callable[[bytes, bool], None],
                 max_bytes: int) -> None:
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise ValueError(f"results socket path {path} is longer than {UNIX_PATH_MAX} "
                             "bytes: choose a shorter results_dir")
        self.path = path
        self.on_result = on_result
        self.max_bytes = max_bytes
        self.sock: socket.socket | None = None
        self.wake_r, self.wake_w = -1, -1
        self.thread: threading.Thread | None = None

    def open(self) -> str:
        """Bind the socket (writable by the container's user) and start reading; the
        host path to mount."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)  # only the worker's user (and root) reach it;
        # the container sees the socket through its mount, whatever the directory says
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # actors run as another user; only they see it mounted
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._read, name=f"results-{self.path.stem}",
                                       daemon=True)
        self.thread.start()
        return str(self.path)

    def close(self) -> None:
        """Read what is already queued, then stop and remove the socket."""
        if self.thread is None:
            return
        os.write(self.wake_w, b"x")
        self.thread.join(5)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        if self.sock is not None:
            self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.thread = None

    def _read(self) -> None:
        assert self.sock is not None
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            if self.sock.fileno() in ready:
                self._take_one()
            elif self.wake_r in ready:
                self._drain()
                return

    def _drain(self) -> None:
        assert self.sock is not None
        self.sock.setblocking(False)
        while True:
            try:
                self._take_one()
            except BlockingIOError:
                return

    def _take_one(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(self.max_bytes + 1)
        cut = len(data) > self.max_bytes
        try:
            self.on_result(data[:self.max_bytes], cut)
        except Exception:  # noqa: BLE001 - a storage failure must not stop the reader
            LOG.exception("a result of %s was not stored", self.path.stem)
