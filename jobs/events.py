"""Actor events (Abaco's): what happened to an actor, for its ``link`` and ``webhook``.

``ACTOR_READY`` and ``ACTOR_ERROR`` come from the scheduler's image verdict,
``EXECUTION_STARTED`` and ``EXECUTION_COMPLETE`` from the worker. Each goes, as
one JSON document with Abaco's fields, to the actor's ``link`` (a message to
another actor, executor ``Abaco Event``, allowed only while the owner may execute
it) and ``webhook`` (an HTTP POST). Emitting one only appends it to a bounded
Redis stream; ``scheduler/deliver.py`` delivers outside the execution path.

Webhook targets on loopback, link-local, private or otherwise special networks
are refused, on registration and again at each delivery (a name may resolve
elsewhere later), unless the ``webhook_allow`` setting names the host or its
network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jobs.errors import ValidationError

ACTOR_READY = "ACTOR_READY"
ACTOR_ERROR = "ACTOR_ERROR"
EXECUTION_STARTED = "EXECUTION_STARTED"
EXECUTION_COMPLETE = "EXECUTION_COMPLETE"
EXECUTOR = "Abaco Event"


def event_document(actor: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    """The JSON an event carries, with Abaco's field names (texts cut at 1 KiB, so an
    event always fits in the linked actor's ``$MSG``)."""
    now = datetime.now(UTC)
    fields = {k: v[:1024] if isinstance(v, str) else v for k, v in fields.items()}
    return {
        "tenant_id": actor["tenant"], "actor_id": actor["id"], "event_type": kind,
        "event_time_utc": now.isoformat().replace("+00:00", "Z"),
        "event_time_display": now.strftime("%Y-%m-%d %H:%M:%S"),
        "_abaco_link": actor.get("link") or "", "_abaco_webhook": actor.get("webhook") or "",
        "_abaco_Content_Type": "application/json", **fields,
    }


def wants_events(actor: dict[str, Any]) -> bool:
    return bool(actor.get("link") or actor.get("webhook"))


# -- webhooks ---------------------------------------------------------------------------------
def allow_list(setting: str) -> tuple[str, ...]:
    """``webhook_allow``: comma-separated host names, addresses or networks (CIDR)."""
    return tuple(part.strip().lower() for part in setting.split(",") if part.strip())


def check_webhook(url: str, allowed: tuple[str, ...], field: str = "webhook",
                  unresolved_ok: bool = False) -> str:
    """The URL, once its scheme, host and every address it resolves to are acceptable.
    ``unresolved_ok``: a name that does not resolve (yet) passes; it is checked again,
    resolved, at each delivery."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, f"{url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValidationError(field, "must not carry credentials in the URL")
    host = parts.hostname.lower()
    if host in allowed:
        return url
    try:
        addresses = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80),
                             field)
    except ValidationError:
        if unresolved_ok and not _is_address(host):
            return url
        raise
    for address in addresses:
        if _special(address) and not _in_allowed(address, allowed):
            raise ValidationError(field, f"{host} resolves to {address}, a loopback, "
                                         "link-local, private or reserved address; the "
                                         "webhook_allow setting may name it")
    return url


def _resolve(host: str, port: int, field: str) -> list[ipaddress.IPv4Address |
                                                    ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValidationError(field, f"{host} does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _special(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_reserved or address.is_multicast or address.is_unspecified)


def _in_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                allowed: Iterable[str]) -> bool:
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name: matched before resolving
    return False
