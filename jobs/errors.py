"""Domain errors. The API maps each class to an HTTP status in one table.

    AbacoError                 base; ``message`` is safe to show to users
    ├── SettingsError          a setting is invalid (raised at start)
    ├── ValidationError        bad input; ``field`` names the offending field
    ├── NotFound               unknown actor, execution, worker...
    ├── Gone                   it existed and was removed on purpose (expired logs)
    ├── Conflict               the resource is in a state that forbids the call
    ├── PermissionDenied       authenticated but not allowed
    ├── Unauthenticated        no or bad credentials
    ├── Timeout                a bounded wait ran out (e.g. synchronous messages)
    └── BackendUnavailable     Redis, S3, Vault or Docker could not serve the call: unreachable,
        │                      failing (5xx), throttling, sealed... (HTTP 503; retry later)
        └── BackendMisconfigured   the backend answers but refuses us: credentials, permissions,
                                   missing bucket or mount (HTTP 503; an operator must act)
"""

from __future__ import annotations

from typing import Any


class AbacoError(Exception):
    """Base of every error the platform raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class SettingsError(AbacoError):
    pass


class ValidationError(AbacoError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.field, self.problem = field, problem


class NotFound(AbacoError):
    pass


class Gone(AbacoError):
    pass


class Conflict(AbacoError):
    pass


class PermissionDenied(AbacoError):
    pass


class Unauthenticated(AbacoError):
    pass


class Timeout(AbacoError):
    pass


class BackendUnavailable(AbacoError):
    pass


class BackendMisconfigured(BackendUnavailable):
    """The backend answered, but refuses the platform's settings (keys, token, bucket, mount).

    A kind of ``BackendUnavailable``: retrying later is still right (an operator may fix
    it meanwhile), but waiting alone will not help, so it is worth alerting on.
    """
