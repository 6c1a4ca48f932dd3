"""The deployment files stay consistent with the code."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

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
    assert (ROOT / "scheduler" / "__main__.py").exists()


def _tasks(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    job = next(iter(parsed["job"][0].values()))
    return {name.strip('"'): next(iter(group[name]["task"][0].values()))
            for group in job["group"] for name in group}


def test_the_nomad_job_carries_no_secret_and_shares_one_actor_token_key():
    hcl2 = pytest.importorskip("hcl2")
    text = (ROOT / "nomad" / "abaco.nomad.hcl").read_text()
    parsed = hcl2.loads(text)
    tasks = _tasks(parsed)
    assert set(tasks) == {"api", "scheduler"}
    for name, task in tasks.items():
        env = task["env"][0]
        assert env["ABACO_AUTH"] == '"jwt"', f"{name}: a cluster never runs without auth"
        assert not {"ABACO_REDIS_PASSWORD", "ABACO_S3_SECRET_KEY", "ABACO_VAULT_TOKEN"} & \
            set(env), f"{name}: secrets come from the variable, not the job"
        templates = task["template"]
        assert any(t.get("env") is True and t["data"] == "${local.secrets_env}"
                   for t in templates), f"{name}: secrets rendered into its environment"
        assert any(t["destination"] == '"secrets/actor-token.pem"' for t in templates), \
            f"{name}: every allocation renders the same actor-token key"
        assert env["ABACO_ACTOR_TOKEN_KEY"] == "${local.env.ABACO_ACTOR_TOKEN_KEY}"
        assert env["ABACO_API_PUBLIC_URL"] == "${local.env.ABACO_API_PUBLIC_URL}", \
            f"{name}: actors are told where the API is, not 127.0.0.1"
    secrets_env = parsed["locals"][0]["secrets_env"]
    for name in ("ABACO_REDIS_PASSWORD", "ABACO_S3_SECRET_KEY", "ABACO_VAULT_TOKEN",
                 "ABACO_WORKER_VAULT_TOKEN"):
        assert name in secrets_env and 'nomadVar "nomad/jobs/abaco"' in secrets_env
    assert "tenant-keys" in text and "api_public_url" in text


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed")
    done = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT / "terraform")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_passes_every_required_variable_of_the_nomad_job():
    hcl2 = pytest.importorskip("hcl2")
    job = hcl2.loads((ROOT / "nomad" / "abaco.nomad.hcl").read_text())
    required = {name.strip('"') for block in job["variable"] for name, body in block.items()
                if "default" not in body}
    main = hcl2.loads((ROOT / "terraform" / "main.tf").read_text())
    resource = main["resource"][0]['"nomad_job"']['"abaco"']
    passed = set(resource["hcl2"][0]["vars"])
    assert required <= passed, f"missing: {required - passed}"
