"""Runners: how one execution becomes one container (see ``base.Runner``)."""

from __future__ import annotations

from jobs.runners.base import Runner, RunResult, RunSpec
from jobs.settings import Settings

__all__ = ["RunResult", "RunSpec", "Runner", "make_runner"]


def make_runner(settings: Settings) -> Runner:
    """The runner named by the ``runner`` setting."""
    from jobs.runners.docker import DockerRunner

    return DockerRunner(settings)
