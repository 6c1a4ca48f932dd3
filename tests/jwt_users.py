"""Users with JWTs: tenant signing keys (test-only), tokens and the request headers
that carry them."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEYS = {"DEV": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "OTHER": ec.generate_private_key(ec.SECP256R1())}
ALG = {"DEV": "RS256", "OTHER": "ES256"}


def _public_pem(tenant: str) -> bytes:
    return KEYS[tenant].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def token(user: str, tenant: str = "DEV", roles: tuple[str, ...] = ("user",),
          signer: str | None = None, **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": user, "tenant": tenant, "roles": list(roles), "exp": now + 300, **extra}
    return jwt.encode(claims, KEYS[signer or tenant], algorithm=ALG[signer or tenant])


def as_user(user: str, tenant: str = "DEV", roles: tuple[str, ...] = ("user",)) -> dict:
    return {f"X-Jwt-Assertion-{tenant}": token(user, tenant, roles)}
