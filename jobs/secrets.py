"""Values of actors' ``defaultEnvironment`` in Vault (or OpenBao) KV v2.

Path: ``{mount}/abaco/{tenant}/actors/{actor_id}/env``. Redis keeps only the
variable names, so a Redis dump never holds a secret value.

Failures never leave this module as hvac or requests exceptions:

- a missing secret reads as ``{}`` (and deleting one is a no-op);
- ``BackendMisconfigured`` (a ``BackendUnavailable``): Vault answers but refuses us —
  a wrong or expired token, a policy that denies the path, no such mount, a 400;
- ``BackendUnavailable``: Vault unreachable, timing out, sealed or standby, 5xx,
  rate-limited.

Nothing is retried here: the caller (the worker gives the message back to the
queue) decides when to try again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hvac
import hvac.exceptions
import requests

from jobs.errors import BackendMisconfigured, BackendUnavailable
from jobs.settings import Settings

_VaultFailure = (requests.RequestException, hvac.exceptions.VaultError)


def _said(exc: hvac.exceptions.VaultError) -> str:
    """What Vault said, without the URL (which hvac appends to ``str(exc)``)."""
    said = "; ".join(str(e) for e in (exc.errors or []) if e) or (exc.args[0] if exc.args else "")
    return str(said or "no error text")[:200]


class SecretStore:
    """Reads and writes one actor's environment values."""

    def __init__(self, settings: Settings) -> None:
        self.mount = settings.vault_mount
        self.addr = settings.vault_addr
        self.client = hvac.Client(url=settings.vault_addr,
                                  token=settings.vault_token.reveal() or None,
                                  timeout=settings.vault_timeout_s)

    def renew_own_token(self) -> bool:
        """A worker's token is periodic: it lives while it is renewed, so each worker
        renews it when it starts. False when it cannot be (a root token, Vault away)."""
        try:
            self.client.auth.token.renew_self()
        except _VaultFailure:
            return False
        return True

    @staticmethod
    def path(tenant: str, actor_id: str) -> str:
        return f"abaco/{tenant}/actors/{actor_id}/env"

    @staticmethod
    def config_path(tenant: str, name: str) -> str:
        """Where a secret actor config's value is kept."""
        return f"abaco/{tenant}/configs/{name}"

    def put(self, tenant: str, actor_id: str, values: Mapping[str, str]) -> None:
        self.put_at(self.path(tenant, actor_id), values)

    def get(self, tenant: str, actor_id: str) -> dict[str, str]:
        """The actor's values; ``{}`` when none are stored."""
        return self.get_at(self.path(tenant, actor_id))

    def delete(self, tenant: str, actor_id: str) -> None:
        self.delete_at(self.path(tenant, actor_id))

    def put_at(self, path: str, values: Mapping[str, str]) -> None:
        try:
            self.client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(values), mount_point=self.mount)
        except _VaultFailure as exc:
            raise self._domain_error(exc, f"writing {self.mount}/{path}") from exc

    def get_at(self, path: str) -> dict[str, str]:
        try:
            reply = self.client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath as exc:
            if self._secret_missing(exc):
                return {}
            raise self._domain_error(exc, f"reading {self.mount}/{path}") from exc
        except _VaultFailure as exc:
            raise self._domain_error(exc, f"reading {self.mount}/{path}") from exc
        data: Any = (reply.get("data") or {}).get("data") if isinstance(reply, dict) else None
        return dict(data or {})

    def delete_at(self, path: str) -> None:
        try:
            self.client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self.mount)
        except hvac.exceptions.InvalidPath as exc:
            if self._secret_missing(exc):
                return
            raise self._domain_error(exc, f"deleting {self.mount}/{path}") from exc
        except _VaultFailure as exc:
            raise self._domain_error(exc, f"deleting {self.mount}/{path}") from exc

    @staticmethod
    def _secret_missing(exc: hvac.exceptions.InvalidPath) -> bool:
        """A 404 with no error text is a missing secret; one with text (``no handler
        for route``) means the mount itself is missing."""
        return not exc.errors

    def _domain_error(self, exc: Exception, doing: str) -> BackendUnavailable:
        """The domain error for an hvac or requests failure, saying what it is."""
        where = f"at {self.addr} while {doing}"
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return BackendUnavailable(f"vault is unreachable {where}: {type(exc).__name__}")
        if isinstance(exc, requests.RequestException):
            return BackendUnavailable(f"vault request failed {where}: {type(exc).__name__}: "
                                      f"{str(exc)[:200]}")
        if not isinstance(exc, hvac.exceptions.VaultError):
            return BackendUnavailable(f"vault client failed {where}: {type(exc).__name__}")
        said = _said(exc)
        if isinstance(exc, (hvac.exceptions.VaultDown, hvac.exceptions.VaultNotInitialized)):
            return BackendUnavailable(f"vault is sealed, uninitialised or in standby {where}: "
                                      f"{said}")
        if isinstance(exc, (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
            return BackendMisconfigured(
                f"vault refused our token {where}: {said}; check vault_token (set, not "
                f"expired) and that its policy allows {self.mount}/data/abaco/* and "
                f"{self.mount}/metadata/abaco/*")
        if isinstance(exc, hvac.exceptions.InvalidPath):
            return BackendMisconfigured(f"vault has no KV v2 mount {self.mount!r} {where}: "
                                        f"{said}; check vault_mount")
        if isinstance(exc, (hvac.exceptions.InvalidRequest,
                            hvac.exceptions.UnsupportedOperation,
                            hvac.exceptions.PreconditionFailed,
                            hvac.exceptions.ParamValidationError)):
            return BackendMisconfigured(f"vault rejected the request {where}: {said}")
        return BackendUnavailable(f"vault failed ({type(exc).__name__}) {where}: {said}")
