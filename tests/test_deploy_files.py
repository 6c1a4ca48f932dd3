"""The deployment files stay consistent with the code."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from jobs.settings import load_settings
from tests.conftest import ROOT


def test_compose_environment_is_valid_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("api", "scheduler"):
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        settings = load_settings(env=env)
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.s3_endpoint == "http://minio:9000"
        assert settings.auth == "jwt", "the API binds 0.0.0.0 in its container"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "0.0.0.0" not in dockerfile and "${ABACO_API_HOST" in dockerfile, \
        "the image binds where the settings say, so auth = none stays on loopback"


def test_nomad_job_runs_the_real_entry_points():
    job = (ROOT / "nomad" / "abaco.nomad.hcl").read_text()
    assert '"api.app:create_app()"' in job
    assert '"--worker-class", "gevent"' in job, "synchronous waits must not hold a thread each"
    assert "--worker-class gevent" in (ROOT / "Dockerfile").read_text()
    assert '["-m", "scheduler"]' in job
    assert job.count('ABACO_AUTH        = "jwt"') == 2, "a cluster API never runs without auth"
    assert (ROOT / "scheduler" / "__main__.py").exists()


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed")
    done = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT / "terraform")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
