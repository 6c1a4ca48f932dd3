"""Identifiers: short random url-safe strings, and the check that keeps ids key-safe."""

from __future__ import annotations

import re
import secrets

from jobs.errors import ValidationError

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


_UNBIASED = 256 - 256 % len(_ALPHABET)  # random bytes at or above this are skipped


def new_id(length: int = 13) -> str:
    """A 13-character id like Abaco's hashids, without look-alike characters: uniform
    over the alphabet (bytes past its last whole multiple are dropped), from one call
    for random bytes rather than one per character (a message's hot path makes one)."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(2 * length)
                  if b < _UNBIASED]
    return "".join(chars[:length])


def is_id(value: str) -> bool:
    """``check_id`` without the error."""
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None


def check_id(value: str, field: str = "id") -> str:
    """Refuse ids that could break a Redis key (``:``, ``{``, ``}``) or a URL path."""
    if not isinstance(value, str) or not _SAFE.fullmatch(value):
        raise ValidationError(field, f"{value!r} is not a valid id (letters, digits, _ . - only)")
    return value
