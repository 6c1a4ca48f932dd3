"""The deployment files stay consistent with the code: docker-compose.yml, the Nomad jobs
in nomad/ (parsed with python-hcl2) and the Terraform that deploys them."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.settings import Settings, load_settings
from tests.conftest import ROOT

NOMAD = ROOT / "nomad"
JOB_FILES = sorted(NOMAD.glob("*.nomad.hcl"))
SETTINGS = {f"ABACO_{f.name.upper()}" for f in fields(Settings)}
# Environment names whose values are secrets (or name where a secret is)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|ROOT_USER")
# Values for the variables a job requires, to build the settings its tasks would get
REQUIRED_SAMPLE = {"redis_url": "redis://10.0.0.5:6379/0", "s3_endpoint": "http://10.0.0.6:9000",
                   "vault_addr": "https://vault.example.org:8200",
                   "api_public_url": "https://abaco.example.org"}


# -- docker-compose.yml -----------------------------------------------------------------

def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _platform_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services running the platform's image (the API and the schedulers)."""
    return {name: body for name, body in compose["services"].items()
            if body.get("image") == "abaco-nx:latest" or "build" in body}


def _schedulers(compose: dict[str, Any], profile: str | None) -> dict[str, dict[str, Any]]:
    """The schedulers `up` starts with that profile (None: with none)."""
    return {name: body for name, body in _platform_services(compose).items()
            if "scheduler" in body.get("command", [])
            and (not body.get("profiles") or profile in body["profiles"])}


def test_compose_environment_is_valid_settings():
    # Every service of the platform's image, the docker-runner scheduler too (it used to
    # check only "api" and "scheduler").
    compose = _compose()
    services = _platform_services(compose)
    assert {"api", "scheduler", "scheduler-docker"} <= set(services)
    for name, service in services.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = load_settings(env=env)
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.s3_endpoint == "http://minio:9000"
        assert settings.auth == "jwt", f"{name}: the API binds 0.0.0.0 in its container"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "0.0.0.0" not in dockerfile and "${ABACO_API_HOST" in dockerfile, \
        "the image binds where the settings say, so auth = none stays on loopback"


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30, check=False).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.mark.parametrize("profile", [None, "docker-runner"])
def test_compose_file_is_valid(profile: str | None):
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed "
                    "(make system-deps installs docker-compose)")
    args = [*command, "-f", str(ROOT / "docker-compose.yml")]
    if profile:
        args += ["--profile", profile]
    done = subprocess.run([*args, "config", "-q"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_one_scheduler_nomad_by_default_docker_in_its_profile():
    compose = _compose()
    default = _schedulers(compose, None)
    assert len(default) == 1, f"`up` starts one scheduler, not {sorted(default)}"
    (name, scheduler), = default.items()
    env = load_settings(env={k: str(v) for k, v in scheduler["environment"].items()})
    assert env.runner == "nomad" and env.nomad_addr == "http://nomad:4646"
    assert "nomad" in scheduler["depends_on"]
    assert "/var/run/docker.sock" not in str(scheduler.get("volumes")), \
        "the Nomad runner needs no engine: the agent drives it"
    nomad = compose["services"]["nomad"]
    assert "-dev" in nomad["command"] and "/var/run/docker.sock" in str(nomad["volumes"])
    # the agent's allocation directories at the same path for the host's engine
    data_dir = next(a.split("=", 1)[1] for a in nomad["command"] if a.startswith("-data-dir="))
    assert any(v.split(":")[0] == v.split(":")[1] and data_dir.startswith(v.split(":")[0])
               for v in nomad["volumes"]), "the data dir is mounted at its own path"

    docker = {n: s for n, s in _schedulers(compose, "docker-runner").items() if n != name}
    assert len(docker) == 1 and all(s["profiles"] == ["docker-runner"] for s in docker.values())
    (_, plain), = docker.items()
    assert load_settings(env={k: str(v) for k, v in plain["environment"].items()}).runner == \
        "docker"
    assert "/var/run/docker.sock:/var/run/docker.sock" in plain["volumes"]
    header = (ROOT / "docker-compose.yml").read_text().split("\nservices:", 1)[0]
    assert f"--profile docker-runner up --scale {name}=0" in header, \
        "the docker-runner command keeps the Nomad scheduler from starting too"


def test_compose_publishes_on_loopback_and_actors_reach_the_api():
    compose = _compose()
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert compose["services"]["api"]["ports"] == ["127.0.0.1:8000:8000"]
    for name, service in _platform_services(compose).items():
        settings = load_settings(env={k: str(v) for k, v in service["environment"].items()})
        assert settings.api_public_url == "http://127.0.0.1:8000", name
        # actors run on the host's engine, off the compose network: loopback is the API's
        # only for actors on the host network
        assert settings.actor_network == "host", name


def test_compose_persists_redis_and_creates_the_bucket():
    compose = _compose()
    redis = compose["services"]["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    bucket = Settings().s3_bucket
    makers = {name: s for name, s in compose["services"].items()
              if str(s.get("image", "")).startswith("minio/mc")}
    assert len(makers) == 1
    (maker_name, maker), = makers.items()
    script = " ".join(maker.get("command", []))
    assert re.search(rf"mc mb --ignore-existing \S+/{re.escape(bucket)}\b", script), script
    assert "minio" in maker["depends_on"]
    for name in _platform_services(compose):
        assert maker_name in compose["services"][name]["depends_on"], name


# -- nomad/ -----------------------------------------------------------------------------

def _hcl(path: Path) -> dict[str, Any]:
    hcl2 = pytest.importorskip("hcl2")
    return dict(hcl2.loads(path.read_text()))


def _blocks(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Labelled blocks (job, group, task, variable...) by their unquoted label."""
    return {label.strip('"'): body for item in items or [] for label, body in item.items()
            if not label.startswith("__")}


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _job(parsed: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    jobs = _blocks(parsed["job"])
    assert len(jobs) == 1
    return next(iter(jobs.items()))


def _groups(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _blocks(_job(parsed)[1]["group"])


def _all_tasks(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: task for group in _groups(parsed).values()
            for name, task in _blocks(group["task"]).items()}


def _variables(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _blocks(parsed.get("variable"))


def _locals(parsed: dict[str, Any]) -> dict[str, Any]:
    return {k: v for block in parsed.get("locals", []) for k, v in block.items()
            if not k.startswith("__")}


def _resolve(parsed: dict[str, Any], value: Any) -> Any:
    """A value with var.X (its default, else a sample) and local.X (and local.env.X)
    followed; other expressions come back as they are."""
    if not isinstance(value, str):
        return value
    ref = re.fullmatch(r"\$\{(var|local)\.([\w.]+)\}", value)
    if not ref:
        return _unquote(value)
    kind, path = ref.groups()
    if kind == "var":
        body = _variables(parsed)[path]
        return _unquote(body["default"]) if "default" in body else REQUIRED_SAMPLE[path]
    found: Any = _locals(parsed)
    for part in path.split("."):
        found = found[part]
    return _resolve(parsed, found)


def _env(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (task.get("env") or [{}])[0].items() if not k.startswith("__")}


def _templates(parsed: dict[str, Any], task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's templates, data resolved (dynamic ones included, as written)."""
    found = list(task.get("template", []))
    for dynamic in task.get("dynamic", []):
        found += [c for body in _blocks([dynamic]).values() for c in body.get("content", [])]
    return [{**t, "data": str(_resolve(parsed, t.get("data", "")))} for t in found]


def test_the_nomad_jobs_are_all_here():
    names = {path.name for path in JOB_FILES}
    assert {"abaco.nomad.hcl", "redis.nomad.hcl", "minio.nomad.hcl"} <= names


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_a_job_holds_no_secret_value(path: Path):
    parsed = _hcl(path)
    job_name, _ = _job(parsed)
    tasks = _all_tasks(parsed)
    assert tasks, f"{path.name}: no task parsed"
    for name, task in tasks.items():
        for key, value in _env(task).items():
            if SECRET_NAME.search(key):
                resolved = str(_resolve(parsed, value))
                assert resolved.startswith("/secrets/"), \
                    f"{path.name} {name}: {key} in env must name a rendered file, not a value"
        config = task["config"][0]
        for arg in [*config.get("args", []), config.get("command", "")]:
            # a secret in argv shows in `ps` and in the job: only references ($NAME, files)
            words = re.findall(r"[^\s\"']+", str(_resolve(parsed, arg)))
            assert not any(re.search(r"pass|secret|token", w, re.I)
                           and not w.startswith(("$", "/secrets/")) for w in words), \
                f"{path.name} {name}: a secret in argv: {arg}"
        for template in _templates(parsed, task):
            data = template["data"]
            for line in data.splitlines():
                key, sep, value = line.strip().partition("=")
                if sep and SECRET_NAME.search(key):
                    assert value.startswith("{{"), f"{path.name} {name}: {key} is written out"
            for var_path in re.findall(r'nomadVar \\?"([^"\\]+)', data):
                assert var_path == f"nomad/jobs/{job_name}", \
                    f"{path.name} {name}: reads {var_path}, not its job's own variable"
    top = path.read_text().split("\nvariable ", 1)[0]
    if "nomadVar" in path.read_text():
        assert f"nomad var put nomad/jobs/{_job(parsed)[0]} " in top, \
            f"{path.name}: its header says how to put its variable"


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_images_are_variables(path: Path):
    parsed = _hcl(path)
    variables = _variables(parsed)
    for name, task in _all_tasks(parsed).items():
        image = task["config"][0]["image"]
        ref = re.fullmatch(r"\$\{var\.(\w+)\}", image)
        assert ref and ref.group(1) in variables, f"{path.name} {name}: image {image}"


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_every_job_updates_and_restarts_sensibly(path: Path):
    parsed = _hcl(path)
    _, job = _job(parsed)
    for group_name, group in _groups(parsed).items():
        update = {**(job.get("update") or [{}])[0], **(group.get("update") or [{}])[0]}
        where = f"{path.name} {group_name}"
        assert update.get("max_parallel", 1) >= 1 and update.get("auto_revert") is True, where
        assert _unquote(update.get("health_check")) in ("checks", "task_states"), where
        if _unquote(update["health_check"]) == "checks":
            checks = [c for s in group.get("service", []) for c in s.get("check", [])]
            assert checks, f"{where}: health by checks, and it has none"
        restart = group["restart"][0]
        assert restart["attempts"] >= 1 and _unquote(restart["mode"]) in ("delay", "fail"), where
        assert re.fullmatch(r"\d+[sm]", _unquote(restart["delay"])), where
        for name, task in _blocks(group["task"]).items():
            kill = _unquote(task.get("kill_timeout", "5s"))
            assert int(kill.rstrip("s")) <= 30, \
                f"{where} {name}: kill_timeout over the clients' default max_kill_timeout"


def test_every_abaco_variable_in_the_jobs_is_a_setting():
    for path in JOB_FILES:
        for name in set(re.findall(r"\bABACO_[A-Z0-9_]+", path.read_text())):
            assert name in SETTINGS, f"{path.name}: {name} is no setting"


def test_redis_appends_to_a_file_on_its_host_volume():
    parsed = _hcl(NOMAD / "redis.nomad.hcl")
    (group_name, group), = _groups(parsed).items()
    volumes = _blocks(group["volume"])
    (task_name, task), = _blocks(group["task"]).items()
    (mount,) = task["volume_mount"]
    volume = volumes[_unquote(mount["volume"])]
    assert _unquote(volume["type"]) == "host" and _unquote(volume["source"]) == "abaco-redis"
    data_dir = _unquote(mount["destination"])
    config = task["config"][0]
    conf = next(t for t in _templates(parsed, task)
                if "/" + _unquote(t["destination"]) in [_unquote(a) for a in config["args"]])
    lines = [line.strip() for line in conf["data"].splitlines()]
    assert "appendonly yes" in lines, "persistence: the append-only file"
    assert f"dir {data_dir}" in lines, "the append-only file on the host volume"
    passwords = [line for line in lines if "requirepass" in line]
    assert passwords and all("requirepass {{" in line for line in passwords), \
        "the password from the variable, never written out"


def test_minio_keeps_its_data_on_its_volume_and_makes_the_bucket():
    parsed = _hcl(NOMAD / "minio.nomad.hcl")
    (group_name, group), = _groups(parsed).items()
    volumes = _blocks(group["volume"])
    tasks = _blocks(group["task"])
    server = tasks["minio"]
    (mount,) = server["volume_mount"]
    volume = volumes[_unquote(mount["volume"])]
    assert _unquote(volume["type"]) == "host" and _unquote(volume["source"]) == "abaco-minio"
    assert _unquote(mount["destination"]) in [_unquote(a) for a in server["config"][0]["args"]]
    # the bucket: a poststart task, once, named by the settings' default
    makers = [t for t in tasks.values()
              if t.get("lifecycle") and _unquote(t["lifecycle"][0]["hook"]) == "poststart"]
    assert len(makers) == 1
    maker = makers[0]
    assert maker["lifecycle"][0].get("sidecar", False) is False
    script = " ".join(str(_resolve(parsed, a)) for a in maker["config"][0]["args"])
    assert "mc mb --ignore-existing" in script and "${var.bucket}" in script
    assert _resolve(parsed, "${var.bucket}") == Settings().s3_bucket
    assert "minio/mc" in _resolve(parsed, maker["config"][0]["image"])
    assert any(t.get("env") is True and "MINIO_ROOT_PASSWORD={{" in t["data"]
               for t in _templates(parsed, maker)), "the client's credentials, rendered"


def _tasks(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The abaco job's task of each group, by group name."""
    return {name: next(iter(_blocks(group["task"]).values()))
            for name, group in _groups(parsed).items()}


def test_the_nomad_job_runs_the_real_entry_points():
    job = (NOMAD / "abaco.nomad.hcl").read_text()
    assert '"api.app:create_app()"' in job
    assert '"--worker-class", "gevent"' in job, "synchronous waits must not hold a thread each"
    assert "--worker-class gevent" in (ROOT / "Dockerfile").read_text()
    assert '["-m", "scheduler"]' in job
    assert (ROOT / "scheduler" / "__main__.py").exists()


def test_the_nomad_job_carries_no_secret_and_shares_one_actor_token_key():
    text = (NOMAD / "abaco.nomad.hcl").read_text()
    parsed = _hcl(NOMAD / "abaco.nomad.hcl")
    tasks = _tasks(parsed)
    assert set(tasks) == {"api", "scheduler"}
    for name, task in tasks.items():
        env = _env(task)
        assert env["ABACO_AUTH"] == '"jwt"', f"{name}: a cluster never runs without auth"
        assert not {"ABACO_REDIS_PASSWORD", "ABACO_S3_SECRET_KEY", "ABACO_VAULT_TOKEN",
                    "ABACO_NOMAD_TOKEN"} & set(env), \
            f"{name}: secrets come from the variable, not the job"
        templates = task["template"]
        assert any(t.get("env") is True and t["data"] == "${local.secrets_env}"
                   for t in templates), f"{name}: secrets rendered into its environment"
        assert any(t["destination"] == '"secrets/actor-token.pem"' for t in templates), \
            f"{name}: every allocation renders the same actor-token key"
        assert env["ABACO_ACTOR_TOKEN_KEY"] == "${local.env.ABACO_ACTOR_TOKEN_KEY}"
        assert env["ABACO_API_PUBLIC_URL"] == "${local.env.ABACO_API_PUBLIC_URL}", \
            f"{name}: actors are told where the API is, not 127.0.0.1"
    secrets_env = _locals(parsed)["secrets_env"]
    for name in ("ABACO_REDIS_PASSWORD", "ABACO_S3_SECRET_KEY", "ABACO_VAULT_TOKEN",
                 "ABACO_WORKER_VAULT_TOKEN"):
        assert name in secrets_env and 'nomadVar "nomad/jobs/abaco"' in secrets_env
    assert "tenant-keys" in text and "api_public_url" in text
    keys = [t for t in _templates(parsed, tasks["api"]) if "tenant-keys/" in t["destination"]]
    assert keys and all("nomadVar" in t["data"] for t in keys), "tenants' keys from the variable"


def test_the_api_is_a_checked_service_at_its_public_url():
    parsed = _hcl(NOMAD / "abaco.nomad.hcl")
    api = _groups(parsed)["api"]
    (service,) = api["service"]
    (check,) = service["check"]
    assert _unquote(check["type"]) == "http"
    path = _unquote(check["path"])
    assert path == "/openapi.json" and f'@app.get("{path}")' in \
        (ROOT / "api" / "app.py").read_text(), "the check asks a route that needs no token"
    ports = _blocks(api["network"][0]["port"])
    assert _unquote(service["port"]) in ports
    assert "default" not in _variables(parsed)["api_public_url"], \
        "each deployment names its load balancer"
    env = _env(_tasks(parsed)["api"])
    assert _resolve(parsed, env["ABACO_API_PUBLIC_URL"]) == REQUIRED_SAMPLE["api_public_url"]


def test_the_scheduler_runs_active_and_standby_with_the_nomad_settings():
    parsed = _hcl(NOMAD / "abaco.nomad.hcl")
    group = _groups(parsed)["scheduler"]
    assert group["count"] == 2
    loop = (ROOT / "scheduler" / "loop.py").read_text()
    assert "def acquire_lock" in loop and "self.acquire_lock()" in loop, \
        "a second scheduler is safe only while one lock decides the active one"
    task = _tasks(parsed)["scheduler"]
    env = _env(task)
    assert env["ABACO_RUNNER"] == "${var.runner}" and env["ABACO_PLACER"] == "${var.placer}"
    assert _resolve(parsed, "${var.runner}") == "nomad"
    assert _resolve(parsed, "${var.placer}") == "local"
    assert ":4646" in str(_resolve(parsed, env["ABACO_NOMAD_ADDR"]))
    assert any(t.get("env") is True and "ABACO_NOMAD_TOKEN={{" in t["data"]
               for t in _templates(parsed, task)), "the Nomad token through a template"
    assert 'var.runner == "docker"' in task["config"][0]["volumes"], \
        "the node's engine socket only for the Docker runner"
    # the settings the scheduler would get (literal values, variables' defaults)
    resolved = {k: str(_resolve(parsed, v)) for k, v in env.items()}
    literal = {k: v for k, v in resolved.items() if "${" not in v}
    settings = load_settings(env=literal)
    assert settings.runner == "nomad" and settings.auth == "jwt"


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed")
    done = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT / "terraform")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_passes_every_required_variable_of_the_nomad_jobs():
    # The nomad_job resources may live in any module under terraform/.
    deployed: dict[str, Any] = {}
    for tf in sorted((ROOT / "terraform").rglob("*.tf")):
        for block in _hcl(tf).get("resource", []):
            for resource in _blocks([block]).get("nomad_job", {}).values():
                spec = re.search(r"([\w-]+\.nomad\.hcl)", resource.get("jobspec", ""))
                if spec:
                    deployed[spec.group(1)] = (resource.get("hcl2") or [{}])[0].get("vars", {})
    assert "abaco.nomad.hcl" in deployed
    for name, passed in deployed.items():
        required = {n for n, body in _variables(_hcl(NOMAD / name)).items()
                    if "default" not in body}
        if required:
            assert isinstance(passed, dict), f"{name}: needs {required}, gets {passed}"
            assert required <= set(passed), f"{name}: missing {required - set(passed)}"


def test_the_readme_says_how_to_deploy_every_job():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Deploy on Nomad\n", 1)[1].split("\n## ", 1)[0]
    for heading in ("### With docker-compose (a laptop)", "### On a cluster (nomad/ jobs)"):
        assert heading in section
    for path in JOB_FILES:
        parsed = _hcl(path)
        assert f"nomad/{path.name}" in section and "nomad job run" in section, path.name
        if "nomadVar" in path.read_text():
            assert f"nomad var put nomad/jobs/{_job(parsed)[0]} " in section, path.name
        for volume in (v for g in _groups(parsed).values() for v in _blocks(g.get("volume"))
                       .values() if _unquote(v["type"]) == "host"):
            assert f'host_volume "{_unquote(volume["source"])}"' in section, path.name
    assert "docker-compose --profile docker-runner up" in section
