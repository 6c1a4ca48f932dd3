"""Actor tokens: short-lived JWTs the platform signs for each execution.

Signed ES256 with the platform's own key (``actor_token_key``; generated 0600 on
first use). A token names one execution of one actor and carries no roles: the
API lets it act on its own actor (read it, its state, its executions) and send
messages to actors its owner may EXECUTE now (grants are checked at use), and
nothing else (see ``jobs.access``). It expires after the run-time limit plus
``actor_token_margin_s`` and is refused as soon as its execution has ended.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jobs.settings import Settings

ISSUER = "abaco-platform"
SCOPE = "execution"


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

    def mint(self, owner: str, tenant: str, valid_s: float, actor_id: str,
             execution_id: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": owner, "tenant": tenant, "scope": SCOPE,
                  "actor_id": actor_id, "execution_id": execution_id, "iat": now,
                  "nbf": now - 5, "exp": now + int(valid_s + self.settings.actor_token_margin_s)}
        return jwt.encode(claims, self.key, algorithm="ES256")

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this platform signed for an execution, or PyJWTError."""
        claims = dict(jwt.decode(token, self.key.public_key(), algorithms=["ES256"],
                                 issuer=ISSUER, options={"require": [
                                     "exp", "sub", "tenant", "actor_id", "execution_id"]}))
        if claims.get("scope") != SCOPE:
            raise jwt.InvalidTokenError("not an execution token of this platform")
        return claims


_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.(eyJ[A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
# An ES256 signature is 64 bytes: 86 characters of base64url. Characters after it that
# the pattern took along (``${token}END``) are the actor's text, not the token.
SIGNATURE_CHARS = 86
REDACTED = b"[actor token redacted]"


def redact_tokens(data: bytes) -> bytes:
    """Mask the platform's execution tokens in text an actor printed (its environment,
    say), so reading an execution's logs never hands out its token. Tokens of other
    issuers are the actor's own business and stay."""
    if b"eyJ" not in data:
        return data
    return _JWT.sub(_mask_if_ours, data)


def _mask_if_ours(match: re.Match[bytes]) -> bytes:
    body = match.group(1)
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return match.group(0)
    ours = isinstance(claims, dict) and claims.get("iss") == ISSUER
    return REDACTED + match.group(2)[SIGNATURE_CHARS:] if ours else match.group(0)
