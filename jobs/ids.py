"""Identifiers: short random url-safe strings, and the check that keeps ids key-safe."""

from __future__ import annotations

import re
import secrets

from jobs.errors import ValidationError

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def new_id(length: int = 13) -> str:
    """A 13-character id like Abaco's hashids, without look-alike characters."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def check_id(value: str, field: str = "id") -> str:
    """Refuse ids that could break a Redis key (``:``, ``{``, ``}``) or a URL path."""
    if not isinstance(value, str) or not _SAFE.fullmatch(value):
        raise ValidationError(field, f"{value!r} is not a valid id (letters, digits, _ . - only)")
    return value
