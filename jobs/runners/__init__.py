"""Runners: how one execution becomes one run on an engine (see ``base.Runner``)."""

from __future__ import annotations

from jobs.runners.base import ImageCheck, Runner, RunResult, RunSpec, StartFailed
from jobs.settings import Settings

__all__ = ["ImageCheck", "RunResult", "RunSpec", "Runner", "StartFailed", "make_runner"]


def make_runner(settings: Settings) -> Runner:
    """The runner named by the ``runner`` setting."""
    if settings.runner == "fake":
        from jobs.runners.fake import FakeRunner

        return FakeRunner()
    if settings.runner == "nomad":
        from jobs.runners.nomad import NomadRunner

        return NomadRunner(settings)
    from jobs.runners.docker import DockerRunner

    return DockerRunner(settings)
