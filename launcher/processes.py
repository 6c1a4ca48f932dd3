"""Processes of the local stack: paths, pid files, spawning, probing and stopping.

A started process leaves ``{data_dir}/run/{name}.pid``; a pid counts as ours only
while its command line still names our program, so a recycled pid is never taken
for ours. Stopping is SIGTERM, a deadline, then SIGKILL.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobs.errors import AbacoError
from jobs.settings import Secret, Settings

PROBE_INTERVAL_S = 0.1
# After what we started died: how long its port may take to be freed, how long a process
# that lives but does not answer gets to stop on SIGTERM, and a bound on SIGKILL's effect.
PORT_FREE_TIMEOUT_S = 15.0
HUNG_GRACE_S = 10.0
KILL_TIMEOUT_S = 10.0
# Probes of our own services go direct, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(AbacoError):
    """A component could not start; the message names it and the fix."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def make(self) -> None:
        for folder in (self.root, self.run, self.logs, self.secrets):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Probe ``condition`` until true or the deadline; a startup probe, not a sleep."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not become ready within {timeout_s:g} s")
        pause.wait(PROBE_INTERVAL_S)


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_or_make_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    write_secret(path, value)
    return value


# The S3 secret key every install shares by default; the local stack never uses it.
_SHARED_S3_SECRET = next(f.default for f in fields(Settings) if f.name == "s3_secret_key")


def with_local_secrets(settings: Settings) -> Settings:
    """Fill in the Redis password, S3 secret key and Vault tokens the launcher generated,
    unless set (an S3 secret key left at the shared default counts as unset)."""
    paths = Paths(settings.data_dir)
    changes: dict[str, Any] = {}
    if not settings.redis_password:
        paths.make()
        changes["redis_password"] = Secret(read_or_make_secret(paths.secrets / "redis.password"))
    if settings.s3_secret_key in ("", _SHARED_S3_SECRET):
        paths.make()
        changes["s3_secret_key"] = Secret(read_or_make_secret(paths.secrets / "s3.secret"))
    vault_file = paths.secrets / "vault.json"
    if not settings.vault_token and vault_file.exists():
        changes["vault_token"] = Secret(json.loads(vault_file.read_text())["root_token"])
    worker_token = paths.secrets / "vault-worker.token"
    if not settings.worker_vault_token and worker_token.exists():
        changes["worker_vault_token"] = Secret(worker_token.read_text().strip())
    return settings.replace(**changes) if changes else settings


def spawn(paths: Paths, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a detached process logging to ``logs/{name}.log``; record its pid."""
    with open(paths.logs / f"{name}.log", "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 env={**os.environ, **(env or {})})
    (paths.run / f"{name}.pid").write_text(str(child.pid))
    return child.pid


# What each started process's command line contains, so a recycled pid is not taken
# for ours after a reboot.
PROGRAM_MARKERS = {"redis": "redis-server", "s3": "launcher.s3server", "vault": "bao",
                   "dockerd": "dockerd", "api": "gunicorn", "scheduler": "scheduler",
                   "worker": "jobs.worker"}


def pid_alive(paths: Paths, name: str, pid_file: Path | None = None) -> int | None:
    """The pid recorded for ``name`` if that process still runs and is what we started."""
    pid_file = pid_file or paths.run / f"{name}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    marker = PROGRAM_MARKERS.get(name, name)
    if name == "worker":  # a recycled pid could be another stack's worker: match its id
        marker = f"{marker} --tenant"
        if f"--worker-id {pid_file.stem}" not in cmdline:
            return None
    return pid if marker in cmdline and not _zombie(pid) else None


def recorded_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/{pid}/stat`` after the command name: state, ppid, pgrp, session..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def session_members(session: int, marker: str) -> list[int]:
    """Live processes of session ``session`` whose command line contains ``marker``.

    Every process ``spawn`` starts leads a session of its own, and what it forks
    (gunicorn's workers, Redis's rewrite child) stays in it after the leader dies;
    the kernel does not hand out the leader's pid again while any member lives. So
    this names exactly the leftovers of one start, on a host shared with other stacks.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if (fields and len(fields) > 3 and fields[3] == str(session)
                and fields[0] not in ("Z", "X") and marker in _cmdline(int(entry.name))):
            members.append(int(entry.name))
    return sorted(members)


def stop_processes(pids: list[int], grace_s: float) -> None:
    """SIGTERM, and SIGKILL what is left after ``grace_s`` (at once when 0); wait them out."""
    first = signal.SIGTERM if grace_s > 0 else signal.SIGKILL
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first)
    if grace_s > 0:
        with contextlib.suppress(StackError):
            wait_for(lambda: not any(_alive(pid) for pid in pids), grace_s, "processes")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(_alive(pid) for pid in pids), KILL_TIMEOUT_S,
             f"processes {pids} to exit after SIGKILL")


def tool(name: str, hint: str) -> str:
    """Find an executable next to this Python first (the venv), then on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} is not installed: {hint}")
    return found


def _terminate(pid: int, name: str, say: Callable[[str], None], grace_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), grace_s, name)
    except ProcessLookupError:
        pass
    except StackError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    say(f"{name:<10} stopped (pid {pid})")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A zombie has exited; only its parent can reap it, which may not be us."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
