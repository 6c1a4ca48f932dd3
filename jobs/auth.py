"""Who is calling: JWT verification, tenants, roles, and the Caller every operation gets.

``auth = none``: everyone is ``anonymous`` with the admin role in the default
tenant (the API then binds to loopback only). ``auth = jwt``: a token in
``X-Jwt-Assertion-<TENANT>`` (Abaco; the tenant comes from the header name) or
``Authorization: Bearer`` (the tenant from a claim). Signatures are checked
against the tenant's public key, ``{tenant_keys_dir}/{TENANT}.pem``, with RS256
or ES256 only, so ``alg: none`` and HMAC signed with a public key are refused;
``exp`` is required and ``nbf`` honoured. Execution tokens (issuer
``abaco-platform``) are checked against the platform's own key; the service then
refuses them once their execution has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from jobs.errors import Unauthenticated, ValidationError
from jobs.ids import check_id
from jobs.settings import Settings
from jobs.tokens import ISSUER, TokenSigner

ROLES = ("limited", "user", "privileged", "admin")
JWT_ALGORITHMS = ["RS256", "ES256"]
HEADER_PREFIX = "x-jwt-assertion-"


@dataclass(frozen=True)
class NonceGrant:
    """What a redeemed nonce allows: one actor or alias, up to one level."""

    nonce_id: str
    target: str
    level: str


@dataclass(frozen=True)
class ExecutionGrant:
    """What an execution's own token allows: see ``jobs.access`` (its own actor, and
    messaging actors its owner may EXECUTE)."""

    actor_id: str
    execution_id: str


@dataclass(frozen=True)
class Caller:
    """Who is calling: user, tenant and roles; a nonce narrows it to one target, an
    execution token to what its execution may do."""

    user: str
    tenant: str
    roles: frozenset[str] = field(default_factory=lambda: frozenset({"admin"}))
    nonce: NonceGrant | None = None
    execution: ExecutionGrant | None = None

    @property
    def narrowed(self) -> bool:
        """A nonce or an execution token: never registers, shares or manages."""
        return self.nonce is not None or self.execution is not None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_privileged(self) -> bool:
        return bool({"admin", "privileged"} & self.roles)

    @property
    def is_limited(self) -> bool:
        return not ({"admin", "privileged", "user"} & self.roles)


@dataclass(frozen=True)
class ClaimNames:
    user: str
    roles: str
    tenant: str
    role_names: Mapping[str, str]
    user_before_at: bool = False  # Abaco: "testuser@carbon.super" is user "testuser"


# Tapis v3 tokens (``X-Tapis-Token``) name their user and tenant so, whatever the profile.
# Tapis keeps roles in its security kernel; a ``tapis/roles`` claim, when a token carries
# one, is read with Abaco v3's role names. Without it: ``user``.
TAPIS = ClaimNames("tapis/username", "tapis/roles", "tapis/tenant_id",
                   {"abaco_admin": "admin", "abaco_privileged": "privileged",
                    "abaco_user": "user", "abaco_limited": "limited"})
TAPIS_HEADER = "x-tapis-token"

PROFILES = {
    "standard": ClaimNames("sub", "roles", "tenant",
                           {role: role for role in ROLES}),
    "abaco": ClaimNames("http://wso2.org/claims/enduser", "http://wso2.org/claims/role",
                        "http://wso2.org/claims/tenant",
                        {"Internal/abaco-admin": "admin",
                         "Internal/abaco-privileged": "privileged",
                         "Internal/abaco-user": "user",
                         "Internal/abaco-limited": "limited"}, user_before_at=True),
}


def claim_names(settings: Settings) -> ClaimNames:
    base = PROFILES[settings.jwt_profile]
    return ClaimNames(settings.jwt_user_claim or base.user,
                      settings.jwt_roles_claim or base.roles,
                      settings.jwt_tenant_claim or base.tenant, base.role_names,
                      base.user_before_at)


def platform_roles(raw: Any, names: ClaimNames) -> frozenset[str]:
    """Map a roles claim (a list, or Abaco's comma-separated string) to platform roles."""
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, list):
        items = raw
    else:
        return frozenset()
    return frozenset(names.role_names[r.strip()] for r in items
                     if isinstance(r, str) and r.strip() in names.role_names)


VERIFIED_KEEP_S = 60.0
VERIFIED_MOST = 10000


class Authenticator:
    """Turns request headers into a Caller, or raises Unauthenticated saying why."""

    def __init__(self, settings: Settings, signer: TokenSigner) -> None:
        self.settings = settings
        self.signer = signer
        self.names = claim_names(settings)
        self.verified = VerifiedTokens()

    def caller(self, headers: Mapping[str, str]) -> Caller:
        if self.settings.auth == "none":
            return self._no_auth_caller(headers)
        tapis = _header(headers, TAPIS_HEADER)
        tenant, token = (None, tapis.strip()) if tapis else self._token(headers)
        key = (tenant, token, bool(tapis))
        known = self.verified.get(key)
        if known is not None:
            return known
        caller, expires = self._verify(token, tenant, bool(tapis))
        self.verified.put(key, caller, expires)
        return caller

    def _verify(self, token: str, tenant: str | None, tapis: bool) -> tuple[Caller, float]:
        try:
            if _issuer(token) == ISSUER:
                return self._actor_token(token, tenant)
            return self._tenant_token(token, tenant, TAPIS if tapis else self.names)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid (nbf)") from None
        except jwt.PyJWTError as exc:  # bad signature, key type, format...
            raise Unauthenticated(f"invalid token: {exc}") from None

    def _no_auth_caller(self, headers: Mapping[str, str]) -> Caller:
        """Everyone is the anonymous admin, except an execution presenting its own token:
        it acts as that execution (so it may add its results, and no more)."""
        bearer = headers.get("Authorization") or headers.get("authorization") or ""
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        if token and _issuer(token) == ISSUER:
            try:
                return self._actor_token(token, None)[0]
            except jwt.PyJWTError as exc:
                raise Unauthenticated(f"invalid execution token: {exc}") from None
        return Caller(user="anonymous", tenant=self.settings.default_tenant)

    def _token(self, headers: Mapping[str, str]) -> tuple[str | None, str]:
        for name, value in headers.items():
            if name.lower().startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX):
                tenant = name[len(HEADER_PREFIX):].upper()
                try:
                    return check_id(tenant, "tenant"), value.strip()
                except ValidationError:
                    raise Unauthenticated(f"invalid tenant {tenant!r} in {name}") from None
        bearer = headers.get("Authorization") or headers.get("authorization") or ""
        if bearer.lower().startswith("bearer ") and bearer[7:].strip():
            return None, bearer[7:].strip()
        raise Unauthenticated("no credentials: send X-Jwt-Assertion-<TENANT>, "
                              "Authorization: Bearer <token>, or ?x-nonce=<nonce>")

    def _tenant_token(self, token: str, header_tenant: str | None,
                      names: ClaimNames) -> tuple[Caller, float]:
        tenant = header_tenant or _unverified(token).get(names.tenant)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"token has no {names.tenant} claim naming its tenant")
        try:
            check_id(tenant, "tenant")
        except ValidationError:
            raise Unauthenticated(f"token names an invalid tenant {tenant!r}") from None
        claims = jwt.decode(token, self._public_key(tenant), algorithms=JWT_ALGORITHMS,
                            options={"require": ["exp"], "verify_aud": False})
        claimed_tenant = claims.get(names.tenant)
        if claimed_tenant not in (None, tenant):
            raise Unauthenticated(f"token is for tenant {claimed_tenant}, not {tenant}")
        user = claims.get(names.user)
        if isinstance(user, str) and names.user_before_at:
            user = user.split("@", 1)[0]
        if not isinstance(user, str) or not user:
            raise Unauthenticated(f"token has no {names.user} claim naming the user")
        roles = platform_roles(claims.get(names.roles), names) or frozenset({"user"})
        return Caller(user=user, tenant=tenant, roles=roles), float(claims["exp"])

    def _actor_token(self, token: str, header_tenant: str | None) -> tuple[Caller, float]:
        claims = self.signer.verify(token)
        if header_tenant not in (None, claims["tenant"]):
            raise Unauthenticated(f"token is for tenant {claims['tenant']}, not {header_tenant}")
        # No roles ride in the token: the owner's grants are checked at each use.
        return Caller(user=claims["sub"], tenant=claims["tenant"], roles=frozenset({"user"}),
                      execution=ExecutionGrant(claims["actor_id"], claims["execution_id"])
                      ), float(claims["exp"])

    def _public_key(self, tenant: str) -> bytes:
        path = Path(self.settings.tenant_keys_path) / f"{tenant}.pem"
        try:
            return path.read_bytes()
        except OSError:
            raise Unauthenticated(f"unknown tenant {tenant}") from None


class VerifiedTokens:
    """Callers of tokens whose signature was checked, kept until the token expires but
    no longer than ``VERIFIED_KEEP_S``: a client sends the same token with every
    request, and verifying it (a key file read, an RSA or ECDSA check) cost more than
    the rest of a read. The bound also lets a replaced tenant key take effect soon.
    At most ``VERIFIED_MOST`` are kept; the oldest go first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[tuple[str | None, str, bool], tuple[Caller, float]] = {}

    def get(self, key: tuple[str | None, str, bool]) -> Caller | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[1] <= time.time():
            with self.lock:
                self.entries.pop(key, None)
            return None
        return hit[0]

    def put(self, key: tuple[str | None, str, bool], caller: Caller, expires: float) -> None:
        with self.lock:
            while len(self.entries) >= VERIFIED_MOST:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = (caller, min(expires, time.time() + VERIFIED_KEEP_S))


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


def _unverified(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _issuer(token: str) -> Any:
    try:
        return _unverified(token).get("iss")
    except jwt.PyJWTError:
        return None
