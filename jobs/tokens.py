"""Actor tokens: short-lived JWTs the platform signs for each execution.

Signed ES256 with the platform's own key (``actor_token_key``; generated 0600 on
first use), scoped to the actor's owner and tenant, valid for the run-time limit
plus ``actor_token_margin_s``. With it an actor can call the API as its owner.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jobs.settings import Settings

ISSUER = "abaco-platform"


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read the key; create it once (O_EXCL, so concurrent workers agree on one key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return loaded


class TokenSigner:
    """Mints and verifies actor tokens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key: ec.EllipticCurvePrivateKey | None = None

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            self._key = load_or_create_key(self.settings.actor_token_key_path)
        return self._key

    def mint(self, owner: str, tenant: str, roles: list[str], valid_s: float,
             actor_id: str, execution_id: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": owner, "tenant": tenant, "roles": sorted(roles),
                  "actor_id": actor_id, "execution_id": execution_id, "iat": now,
                  "nbf": now - 5, "exp": now + int(valid_s + self.settings.actor_token_margin_s)}
        return jwt.encode(claims, self.key, algorithm="ES256")

    def verify(self, token: str) -> dict[str, Any]:
        return dict(jwt.decode(token, self.key.public_key(), algorithms=["ES256"],
                               issuer=ISSUER, options={"require": ["exp", "sub", "tenant"]}))
