"""Placers: where workers live (see ``base.Placer``)."""

from __future__ import annotations

from jobs.logstore import LogStore
from jobs.placers.base import Placer
from jobs.runners.base import Runner
from jobs.secrets import SecretStore
from jobs.settings import Settings
from jobs.store import Store

__all__ = ["Placer", "make_placer"]


def make_placer(settings: Settings, store: Store, runner: Runner, logs: LogStore,
                secrets: SecretStore) -> Placer:
    """The placer named by the ``placer`` setting."""
    if settings.placer == "memory":
        from jobs.placers.memory import MemoryPlacer

        return MemoryPlacer(settings, store, runner, logs, secrets)
    if settings.placer == "nomad":
        from jobs.placers.nomad import NomadPlacer

        return NomadPlacer(settings, store)
    from jobs.placers.local import LocalPlacer

    return LocalPlacer(settings, store)
