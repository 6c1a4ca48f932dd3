"""Values of actors' ``defaultEnvironment`` in Vault (or OpenBao) KV v2.

Path: ``{mount}/abaco/{tenant}/actors/{actor_id}/env``. Redis keeps only the
variable names, so a Redis dump never holds a secret value.
"""

from __future__ import annotations

from collections.abc import Mapping

import hvac
import hvac.exceptions
import requests

from jobs.errors import BackendUnavailable
from jobs.settings import Settings


class SecretStore:
    """Reads and writes one actor's environment values."""

    def __init__(self, settings: Settings) -> None:
        self.mount = settings.vault_mount
        self.client = hvac.Client(url=settings.vault_addr,
                                  token=settings.vault_token.reveal() or None, timeout=5)

    @staticmethod
    def path(tenant: str, actor_id: str) -> str:
        return f"abaco/{tenant}/actors/{actor_id}/env"

    def put(self, tenant: str, actor_id: str, values: Mapping[str, str]) -> None:
        try:
            self.client.secrets.kv.v2.create_or_update_secret(
                path=self.path(tenant, actor_id), secret=dict(values), mount_point=self.mount)
        except (requests.RequestException, hvac.exceptions.VaultError) as exc:
            raise BackendUnavailable(f"vault is unavailable: {exc}") from exc

    def get(self, tenant: str, actor_id: str) -> dict[str, str]:
        try:
            reply = self.client.secrets.kv.v2.read_secret_version(
                path=self.path(tenant, actor_id), mount_point=self.mount,
                raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath:
            return {}
        except (requests.RequestException, hvac.exceptions.VaultError) as exc:
            raise BackendUnavailable(f"vault is unavailable: {exc}") from exc
        return dict((reply.get("data") or {}).get("data") or {})

    def delete(self, tenant: str, actor_id: str) -> None:
        try:
            self.client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=self.path(tenant, actor_id), mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return
        except (requests.RequestException, hvac.exceptions.VaultError) as exc:
            raise BackendUnavailable(f"vault is unavailable: {exc}") from exc
