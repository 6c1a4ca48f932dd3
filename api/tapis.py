"""What Tapis v3 clients (tapipy) ask of a platform besides the actors API.

The actors API itself is served at ``/v3/actors/...`` by the same handlers as
``/actors/...`` (snake_case replies there, whatever the ``case`` setting). tapipy,
given only a base URL, reads ``/v3/sites`` and ``/v3/tenants`` and picks the tenant
whose ``base_url`` is that URL: each tenant with a key in ``tenant_keys_dir`` is
listed with this platform's public URL and its public key, on one site, ``local``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app

from api.envelope import envelope
from jobs.errors import NotFound
from jobs.settings import Settings

bp = Blueprint("tapis", __name__)
SITE = "local"


def _settings() -> Settings:
    settings: Settings = current_app.config["ABACO_SETTINGS"]
    return settings


def _tenants() -> list[dict[str, Any]]:
    settings = _settings()
    keys = settings.tenant_keys_path
    found = sorted(keys.glob("*.pem")) if keys.is_dir() else []
    names = [key.stem for key in found] or [settings.default_tenant]
    return [{"tenant_id": name, "site_id": SITE, "base_url": settings.api_url,
             "public_key": _key(keys, name), "status": "active",
             "description": f"tenant {name} of this platform",
             "token_service": f"{settings.api_url}/v3/tokens",
             "security_kernel": f"{settings.api_url}/v3/security",
             "authenticator": f"{settings.api_url}/v3/oauth2",
             "admin_user": "admin", "token_gen_services": []} for name in names]


def _key(keys: Path, name: str) -> str:
    try:
        return (keys / f"{name}.pem").read_text()
    except OSError:
        return ""


@bp.get("/v3/tenants")
def list_tenants() -> Response:
    return envelope(_tenants(), "Tenants retrieved successfully.")


@bp.get("/v3/tenants/<tenant_id>")
def get_tenant(tenant_id: str) -> Response:
    for tenant in _tenants():
        if tenant["tenant_id"] == tenant_id:
            return envelope(tenant, "Tenant retrieved successfully.")
    raise NotFound(f"tenant {tenant_id} not found")


@bp.get("/v3/sites")
def list_sites() -> Response:
    settings = _settings()
    site = {"site_id": SITE, "base_url": settings.api_url, "primary": True,
            "tenant_base_url_template": settings.api_url, "site_admin_tenant_id":
            settings.default_tenant, "services": ["actors", "tenants", "sites"]}
    return envelope([site], "Sites retrieved successfully.")
