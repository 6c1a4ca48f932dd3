"""What both client suites share: call an SDK operation, keep its outcome, never raise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class Recorder:
    """``call(op, fn, **kwargs)`` runs ``fn`` and records ``{ok, value}`` or ``{ok,
    error}`` under ``op``; ``plain`` turns the SDK's reply into JSON values."""

    def __init__(self, plain: Callable[[Any], Any]) -> None:
        self.plain = plain
        self.out: dict[str, Any] = {}

    def call(self, op: str, fn: Any, /, **kwargs: Any) -> Any:
        try:
            value = self.plain(fn(**kwargs))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            self.out[op] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            return None
        self.out[op] = {"ok": True, "value": value}
        return value

    def report(self) -> None:
        print(json.dumps(self.out))
