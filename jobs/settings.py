"""Settings: one frozen object, built once at start and passed down.

Precedence, highest first: explicit keyword arguments, ``ABACO_<NAME>``
environment variables, the TOML file named by ``ABACO_CONFIG_FILE``, then the
defaults below, which serve the local embedded stack (``abaco up``).

Every setting is validated when the object is built; a bad value raises
``SettingsError`` naming the setting, so a process fails at start rather than
on its first request. Secret values are wrapped in ``Secret`` so that they
never show in logs or reprs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jobs.errors import SettingsError


class Secret(str):
    """A string that hides its value in every formatting (repr, str, f-strings, %);
    ``reveal()`` is the one way to the value, for the client that needs it."""

    MASK = "**********"

    def __repr__(self) -> str:
        return f"Secret('{self.MASK}')"

    def __str__(self) -> str:
        return self.MASK

    def __format__(self, spec: str) -> str:
        return format(self.MASK, spec)

    def reveal(self) -> str:
        return str.__str__(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "case": ("camel", "snake"),
    "auth": ("none", "jwt"),
    "jwt_profile": ("standard", "abaco"),
    "runner": ("docker", "fake", "nomad"),
    "placer": ("local", "memory", "nomad"),
    "nomad_worker_driver": ("docker", "raw_exec"),
    "actor_network": ("none", "host", "bridge"),
    "json_env_format": ("python", "json"),
    "prewarm": ("on", "off"),
    "api_fast_lane": ("on", "off"),
    "redis_appendfsync": ("always", "everysec"),
}


@dataclass(frozen=True)
class Settings:
    """Every knob of the platform; see the settings table in README.md."""

    prefix: str = "abaco"
    default_tenant: str = "DEV"
    data_dir: Path = field(default_factory=lambda: Path(".abaco").resolve())
    case: str = "camel"
    auth: str = "none"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 4
    api_public_url: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_password: Secret = Secret("")
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_bucket: str = "abaco-logs"
    s3_region: str = "us-east-1"
    s3_access_key: str = "abaco"
    s3_secret_key: Secret = Secret("abaco-local-secret")
    vault_addr: str = "http://127.0.0.1:8200"
    vault_token: Secret = Secret("")
    vault_mount: str = "secret"
    worker_vault_token: Secret = Secret("")
    docker_host: str = ""
    nomad_addr: str = "http://127.0.0.1:4646"
    nomad_token: Secret = Secret("")
    nomad_namespace: str = "default"
    nomad_datacenters: str = "dc1"
    nomad_node_pool: str = "default"
    nomad_priority: int = 50
    nomad_relay_image: str = "abaco-nx:latest"
    nomad_worker_image: str = "abaco-nx:latest"
    nomad_worker_driver: str = "docker"
    nomad_max_workers: int = 64
    queues: str = "default"
    search_max_logs: int = 1000
    nomad_queue_pools: str = ""
    runner: str = "docker"
    placer: str = "local"
    actor_network: str = "none"
    json_env_format: str = "python"
    max_log_bytes: int = 1024 * 1024
    heartbeat_ttl_s: float = 10.0
    worker_idle_s: float = 300.0
    scheduler_tick_s: float = 5.0
    scheduler_sweep_s: float = 300.0
    sync_timeout_s: float = 30.0
    pids_limit: int = 512
    max_run_time_s: float = 3600.0
    default_max_workers: int = 4
    max_workers_per_host: int = field(default_factory=lambda: 4 * (os.cpu_count() or 1))
    sync_worker_idle_s: float = 900.0
    drain_timeout_s: float = 30.0
    start_attempts: int = 3
    jwt_profile: str = "standard"
    tenant_keys_dir: str = ""
    jwt_user_claim: str = ""
    jwt_roles_claim: str = ""
    jwt_tenant_claim: str = ""
    actor_token_key: str = ""
    actor_token_margin_s: float = 300.0
    inbox_block_s: float = 2.0
    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0
    outage_patience_s: float = 300.0
    worker_startup_grace_s: float = 30.0
    docker_timeout_s: float = 60.0
    redis_connect_timeout_s: float = 3.0
    vault_timeout_s: float = 5.0
    log_drain_s: float = 5.0
    max_recoveries: int = 3
    message_env_allow: str = ""
    actor_user: str = "65534:65534"
    actor_mem_default: str = "512m"
    actor_mem_max: str = "2g"
    actor_cpus_default: float = 1.0
    actor_cpus_max: float = 2.0
    mount_allow: str = ""
    image_registries: str = "docker.io"
    webhook_allow: str = ""
    log_ex_default: int = 0
    log_ex_max: int = 366 * 24 * 3600
    execution_keep_s: float = 30 * 24 * 3600.0
    execution_keep_count: int = 10000
    execution_settle_s: float = 300.0
    webhook_attempts: int = 5
    webhook_timeout_s: float = 5.0
    event_queue_max: int = 10000
    results_dir: str = ""
    prewarm: str = "on"
    api_fast_lane: str = "on"
    # GET /metrics: open when empty under auth = none; otherwise a scraper sends
    # "Authorization: Bearer <metrics_token>" (under auth = jwt it is required).
    metrics_token: Secret = Secret("")
    prewarm_busybox: str = ""
    max_result_bytes: int = 128 * 1024
    max_results: int = 1000
    results_ttl_s: float = 86400.0
    max_min_workers: int = 1
    user_max_actors: int = 1000
    user_max_workers: int = 0
    tenant_max_workers: int = 0
    api_worker_connections: int = 1000
    redis_max_connections: int = 1100
    # Logs of ended runs each API process keeps in memory (jobs/log_cache.py); 0: none.
    log_cache_bytes: int = 32 * 1024 * 1024
    # The Redis abaco up starts: "always" writes each acknowledged message to disk before
    # the reply (it survives kill -9 and power loss); "everysec" is faster (bench/api.py:
    # POST 0.55 against 0.47 of bare Flask) and can lose up to about 2 s of them.
    redis_appendfsync: str = "always"

    @property
    def tenant_keys_path(self) -> Path:
        """Public keys of tenants' JWT issuers: ``{TENANT}.pem`` files."""
        return Path(self.tenant_keys_dir) if self.tenant_keys_dir else self.data_dir / "tenant-keys"

    @property
    def results_path(self) -> Path:
        """Where workers bind results sockets (paths must stay under 108 bytes)."""
        return Path(self.results_dir) if self.results_dir else self.data_dir / "run" / "results"

    @property
    def shim_path(self) -> Path:
        """Where workers put the prewarm shim that prewarmed containers mount."""
        return self.data_dir / "run" / "shim"

    @property
    def actor_token_key_path(self) -> Path:
        """The platform's private key for actor tokens (generated when missing)."""
        if self.actor_token_key:
            return Path(self.actor_token_key)
        return self.data_dir / "secrets" / "actor-token.pem"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise SettingsError(f"setting {name}={value!r} is not one of {', '.join(allowed)}")
        for name in ("api_port", "max_body_bytes", "max_log_bytes", "pids_limit", "api_workers",
                     "default_max_workers", "max_workers_per_host", "start_attempts",
                     "max_recoveries", "api_worker_connections", "redis_max_connections",
                     "max_result_bytes", "max_results", "webhook_attempts",
                     "event_queue_max", "log_ex_max", "execution_keep_count"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be a positive number")
        for name in ("heartbeat_ttl_s", "worker_idle_s", "scheduler_tick_s", "sync_timeout_s",
                     "max_run_time_s", "sync_worker_idle_s", "drain_timeout_s", "inbox_block_s",
                     "backoff_first_s", "backoff_max_s", "outage_patience_s",
                     "worker_startup_grace_s", "docker_timeout_s", "redis_connect_timeout_s",
                     "vault_timeout_s", "log_drain_s", "results_ttl_s",
                     "webhook_timeout_s", "execution_keep_s", "scheduler_sweep_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be a positive number of seconds")
        if self.auth == "none" and self.api_host not in ("127.0.0.1", "localhost", "::1"):
            raise SettingsError("setting api_host must be a loopback address when auth=none")
        if self.redis_max_connections < self.api_worker_connections:
            raise SettingsError("setting redis_max_connections must be at least "
                                "api_worker_connections: every waiting request may hold one")
        for name in ("max_min_workers", "user_max_actors", "user_max_workers",
                     "tenant_max_workers", "log_ex_default"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting {name} must be 0 (no limit) or more")
        if self.log_cache_bytes < 0:
            raise SettingsError("setting log_cache_bytes must be 0 (keep none) or more")
        for name in ("actor_mem_default", "actor_mem_max"):
            if not re.fullmatch(r"^[1-9]\d*[bkmg]?$", getattr(self, name).lower()):
                raise SettingsError(f"setting {name} must be a size like '512m'")
        if self.actor_cpus_default <= 0 or self.actor_cpus_max <= 0:
            raise SettingsError("settings actor_cpus_default and actor_cpus_max must be "
                                "positive numbers of CPUs")
        if self.actor_user and not re.fullmatch(r"\d+(:\d+)?", self.actor_user):
            raise SettingsError("setting actor_user must be uid:gid (numbers) or empty")
        if any(not p.startswith("/") for p in self.mount_prefixes):
            raise SettingsError("setting mount_allow must list absolute host paths")
        for pattern in filter(None, (p.strip() for p in self.message_env_allow.split(","))):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SettingsError(f"setting message_env_allow: {pattern!r} is not a "
                                    f"regular expression: {exc}") from None
        if not self.prefix or ":" in self.prefix:
            raise SettingsError("setting prefix must be non-empty and contain no ':'")

    @property
    def mount_prefixes(self) -> tuple[str, ...]:
        """Host paths (and what is below them) privileged actors may mount."""
        return tuple(p.strip().rstrip("/") or "/" for p in self.mount_allow.split(",")
                     if p.strip())

    @property
    def registries(self) -> tuple[str, ...]:
        """Registries actor images may name (``image_registries``, comma-separated)."""
        return tuple(r.strip() for r in self.image_registries.split(",") if r.strip())

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The queues actors may name (``queues``, comma-separated); ``default`` always."""
        named = tuple(q.strip() for q in self.queues.split(",") if q.strip())
        return ("default", *(q for q in named if q != "default"))

    def node_pool_for(self, queue: str) -> str:
        """The Nomad node pool a queue's workers and runs go to: ``nomad_queue_pools``
        (``queue=pool,...``), else ``nomad_node_pool`` for ``default`` and the queue's own
        name for the others."""
        for pair in self.nomad_queue_pools.split(","):
            name, sep, pool = pair.partition("=")
            if sep and name.strip() == queue and pool.strip():
                return pool.strip()
        return self.nomad_node_pool if queue == "default" else queue

    def mount_source(self, host_path: str) -> str | None:
        """The real host path to mount (symbolic links resolved, now), when it lies under
        a path ``mount_allow`` names; None otherwise."""
        real = os.path.realpath(host_path)
        for prefix in self.mount_prefixes:
            allowed = os.path.realpath(prefix).rstrip("/") or "/"
            if real == allowed or real.startswith(allowed.rstrip("/") + "/"):
                return real
        return None

    @property
    def api_url(self) -> str:
        """Where actors and clients reach the API."""
        return self.api_public_url or f"http://{self.api_authority}"

    @property
    def api_authority(self) -> str:
        """``host:port`` of the API, an IPv6 host in brackets (``[::1]:8000``), as URLs
        and gunicorn's ``--bind`` take it."""
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"{host}:{self.api_port}"

    def as_env(self) -> dict[str, str]:
        """The settings as ABACO_* variables, for child processes."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            env[f"ABACO_{f.name.upper()}"] = (
                value.reveal() if isinstance(value, Secret) else str(value)
            )
        return env

    def for_workers(self) -> Settings:
        """What a worker process gets: the Vault token of its own (read-only on actors'
        environments, made by ``abaco up``) in place of ours, when one is set."""
        if not self.worker_vault_token:
            return self
        return self.replace(vault_token=self.worker_vault_token,
                            worker_vault_token=Secret(""))

    def replace(self, **changes: Any) -> Settings:
        return load_settings(base=self, **changes)


def _convert(name: str, kind: Any, raw: Any) -> Any:
    """Turn a raw env/TOML value into the field's type, naming the field on failure."""
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(str(raw)).expanduser().resolve()
        if kind in (Secret, "Secret"):
            return raw if isinstance(raw, Secret) else Secret(str(raw))
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name}={raw!r} is not a valid {kind}") from exc


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"setting ABACO_CONFIG_FILE: cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"setting ABACO_CONFIG_FILE: {path} is not valid TOML: {exc}") from exc
    return dict(data.get("abaco", data))


def load_settings(
    env: Mapping[str, str] | None = None, base: Settings | None = None, **explicit: Any
) -> Settings:
    """Build the settings: explicit > ABACO_* env > TOML file > defaults (or ``base``)."""
    env = os.environ if env is None else env
    known = {f.name: f.type for f in fields(Settings)}
    merged: dict[str, Any] = {}
    if base is None:
        config_file = env.get("ABACO_CONFIG_FILE")
        if config_file:
            merged.update(_read_toml(config_file))
        for name in known:
            key = f"ABACO_{name.upper()}"
            if key in env:
                merged[name] = env[key]
    merged.update(explicit)
    unknown = sorted(set(merged) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    converted = {name: _convert(name, known[name], value) for name, value in merged.items()}
    if base is not None:
        return dataclasses.replace(base, **converted)
    return Settings(**converted)
