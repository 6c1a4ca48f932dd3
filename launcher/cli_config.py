"""Where the ``abaco`` client commands find the platform: its URL, the token, the tenant.

Each value comes from the first of: the command's flag (``--url``, ``--token``,
``--token-file``, ``--tenant``), the environment (``ABACO_URL``, ``ABACO_TOKEN``,
``ABACO_TOKEN_FILE``, ``ABACO_TENANT``), the config file, the default
(``http://127.0.0.1:8000``, no token, no tenant). Within one source a token beats a
token file.

The config file is TOML: ``$ABACO_CONFIG`` when set (it must exist), else
``$XDG_CONFIG_HOME/abaco/config.toml`` (``~/.config/abaco/config.toml``) when it exists,
with the keys ``url``, ``token``, ``token_file`` and ``tenant``.

The server's settings are also ``ABACO_<NAME>`` variables, but ``load_settings`` reads
only the names of its own settings (none is ``url``, ``token``, ``token_file``,
``tenant`` or ``config``), so these variables never reach or trouble a server started
from the same shell.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.client import DEFAULT_URL

KEYS = ("url", "token", "token_file", "tenant")


class ConfigError(Exception):
    """The config file, or a token file, cannot be used; ``message`` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    """The platform to talk to, and where each value came from (``abaco config``)."""

    url: str
    token: str | None
    tenant: str | None
    sources: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file's path, and whether it must exist (named by ``$ABACO_CONFIG``)."""
    named = env.get("ABACO_CONFIG")
    if named:
        return Path(named).expanduser(), True
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "abaco" / "config.toml", False


def read_config(path: Path, required: bool) -> dict[str, str]:
    if not path.exists() and not required:
        return {}
    try:
        with open(path, "rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(KEYS)})")
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
    return dict(data)


def _read_token_file(path: str, source: str) -> str:
    try:
        token = Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"token file {path} ({source}): cannot read it: "
                          f"{exc.strerror}") from exc
    if not token:
        raise ConfigError(f"token file {path} ({source}) is empty")
    if not _header_safe(token.decode("latin-1")):
        raise ConfigError(f"token file {path} ({source}) holds characters a token cannot "
                          "have (printable ASCII only)")
    return token.decode()


def _header_safe(value: str) -> bool:
    """Printable ASCII without spaces: what an HTTP header can carry as a token, with
    no CR or LF to start another header."""
    return all("!" <= char <= "~" for char in value)


def resolve(flags: Mapping[str, str | None], env: Mapping[str, str] | None = None) -> Target:
    """The target from ``flags`` (keys as ``KEYS``; ``None`` when not given), the
    environment and the config file, in that order."""
    env = os.environ if env is None else env
    path, required = config_path(env)
    config = read_config(path, required)
    layers: list[tuple[str, Mapping[str, str | None]]] = [
        ("flag", flags),
        ("environment", {key: env.get(f"ABACO_{key.upper()}") for key in KEYS}),
        (f"config file {path}", config),
    ]
    sources: dict[str, str] = {}

    def first(*keys: str) -> tuple[str | None, str | None]:
        for where, layer in layers:
            for key in keys:
                value = layer.get(key)
                if value:
                    sources[keys[0]] = where
                    return key, value
        return None, None

    _, url = first("url")
    kind, token = first("token", "token_file")
    if kind == "token_file" and token:
        token = _read_token_file(token, sources["token"])
    _, tenant = first("tenant")
    for name, value in (("token", token), ("tenant", tenant)):
        if value and not _header_safe(value):
            raise ConfigError(f"the {name} ({sources[name]}) holds characters it cannot "
                              "have (printable ASCII only); it is not shown here")
    if url is None:
        sources["url"] = "default"
    return Target(url or DEFAULT_URL, token, tenant, sources,
                  path if config or required else None)
