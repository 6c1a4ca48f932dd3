"""terraform/: the AWS cluster module, the platform module (the nomad/ jobs) and the root
that composes them.

Formatting and the cloud-init templates need only the terraform binary. `terraform
validate` and `terraform test` (mocked providers: no cloud, no credentials) need the
providers too, installed from an offline mirror: a directory named registry.terraform.io
(the layout `terraform providers mirror` writes) at $ABACO_TF_PLUGIN_DIR or under /opt,
/usr/share, /usr/local/share or ~/.terraform.d. Each test skips, saying why, when what
it needs is missing. Terraform always runs in a temporary copy of terraform/ and nomad/,
so no .terraform directory or lock file lands in the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = ROOT / "terraform"
MODULES = TERRAFORM_DIR / "modules"
NOMAD_DIR = ROOT / "nomad"
MIRROR_ENV = "ABACO_TF_PLUGIN_DIR"
SEARCHED = (Path("/opt"), Path("/usr/share"), Path("/usr/local/share"),
            Path.home() / ".terraform.d")
TIMEOUT = 120


# --- terraform, its offline mirror, and a scratch copy of the repository's deploy files


def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform is not installed (not on PATH)")
    return found


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TF_") or k == "TF_LOG"}
    config = tmp / "terraformrc"
    if not config.exists():
        config.write_text("# no network installation: providers come from -plugin-dir\n")
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1",
               TF_CLI_CONFIG_FILE=str(config))
    return env


def _run(args: list[str], cwd: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_terraform(), *args, "-no-color"], cwd=cwd, env=_env(tmp),
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _platform() -> str:
    """Terraform's os_arch (linux_amd64), the name of a mirror's per-platform directory."""
    done = subprocess.run([_terraform(), "version", "-json"], capture_output=True,
                          text=True, timeout=30, check=False)
    try:
        return str(json.loads(done.stdout)["platform"])
    except (ValueError, KeyError):
        pytest.skip(f"cannot tell terraform's platform: {done.stdout}{done.stderr}")


def _registries() -> list[Path]:
    """Directories named registry.terraform.io: $ABACO_TF_PLUGIN_DIR (it, or inside it),
    then the usual places, down to three levels."""
    found: list[Path] = []
    given = os.environ.get(MIRROR_ENV)
    if given:
        base = Path(given)
        found += [p for p in (base, base / "registry.terraform.io")
                  if p.name == "registry.terraform.io" and p.is_dir()]
    for base in SEARCHED:
        for depth in range(3):
            pattern = "/".join(["*"] * depth + ["registry.terraform.io"])
            try:
                found += sorted(p for p in base.glob(pattern) if p.is_dir())
            except OSError:
                continue
    return found


def _has_provider(registry: Path, name: str, platform: str) -> bool:
    provider = registry / "hashicorp" / name
    unpacked = any(provider.glob(f"*/{platform}/terraform-provider-{name}*"))
    packed = any(provider.glob(f"terraform-provider-{name}_*_{platform}.zip"))
    return unpacked or packed


def _plugin_dir(*providers: str) -> Path:
    """The directory holding a registry.terraform.io with every one of providers, for
    `terraform init -plugin-dir`; skips, saying what is missing where, without one."""
    _terraform()
    platform = _platform()
    registries = _registries()
    for registry in registries:
        if all(_has_provider(registry, name, platform) for name in providers):
            return registry.parent
    searched = ", ".join(str(r) for r in registries) or "none found"
    where = f"${MIRROR_ENV} or under " + ", ".join(str(p) for p in SEARCHED)
    needed = " and ".join(f"hashicorp/{name}" for name in providers)
    pytest.skip(f"no offline provider mirror holds {needed} for {platform} (looked for "
                f"registry.terraform.io at {where}; mirrors found: {searched})")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of terraform/ and nomad/, side by side as in the repository (the platform
    module reads ../../../nomad), without any .terraform directory or lock file."""
    base = tmp_path_factory.mktemp("terraform")
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
    shutil.copytree(TERRAFORM_DIR, base / "terraform", ignore=ignore)
    shutil.copytree(NOMAD_DIR, base / "nomad", ignore=ignore)
    return base


def _init(scratch: Path, relative: str, *providers: str) -> Path:
    plugin_dir = _plugin_dir(*providers)
    workdir = scratch / "terraform" / relative
    if not (workdir / ".terraform").is_dir():
        done = _run(["init", "-backend=false", "-input=false", f"-plugin-dir={plugin_dir}"],
                    workdir, scratch)
        assert done.returncode == 0, done.stdout + done.stderr
    return workdir


def _terraform_test(workdir: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    return _run(["test"], workdir, scratch)


# --- formatting, and what cloud-init makes of the nodes


def test_terraform_fmt_check():
    done = subprocess.run([_terraform(), "fmt", "-check", "-recursive", "-diff",
                           str(TERRAFORM_DIR)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, "terraform fmt would change:\n" + done.stdout + done.stderr


def _render_cloud_init(tmp: Path) -> dict[str, str]:
    """The cluster module's cloud-init for each kind of node, rendered by terraform itself
    (a provider-less configuration of outputs: no mirror needed)."""
    template = MODULES / "cluster" / "templates" / "cloud-init.yaml.tftpl"
    common = ('cluster_name = "abaco", datacenter = "dc1", bootstrap_expect = 3, '
              'retry_join = "provider=aws region=us-east-1 tag_key=NomadCluster '
              'tag_value=abaco", acl_enabled = false, nomad_version = ""')
    volumes = '{ "abaco-redis" = "/opt/abaco/redis", "abaco-minio" = "/opt/abaco/minio" }'
    kinds = {"server": ('"server"', '""', "{}"), "client": ('"client"', '"compute"', "{}"),
             "storage": ('"client"', '"storage"', volumes)}
    config = "".join(
        f'output "{kind}" {{\n  value = templatefile("{template}", {{ role = {role}, '
        f"node_class = {node_class}, host_volumes = {host_volumes}, {common} }})\n}}\n"
        for kind, (role, node_class, host_volumes) in kinds.items())
    (tmp / "render.tf").write_text(config)
    for args in (["init", "-backend=false", "-input=false"],
                 ["apply", "-auto-approve", "-input=false"]):
        done = _run(args, tmp, tmp)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _run(["output", "-json"], tmp, tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return {kind: body["value"] for kind, body in json.loads(done.stdout).items()}


def test_cloud_init_installs_docker_and_nomad_and_configures_each_node(tmp_path):
    yaml = pytest.importorskip("yaml")
    hcl2 = pytest.importorskip("hcl2")
    _terraform()
    rendered = _render_cloud_init(tmp_path)
    nomad_configs: dict[str, dict[str, Any]] = {}
    for kind, text in rendered.items():
        assert text.startswith("#cloud-config\n"), kind
        document = yaml.safe_load(text)
        files = {f["path"]: f["content"] for f in document["write_files"]}
        script = files["/usr/local/sbin/abaco-install-nomad"]
        assert document["runcmd"] == ["/usr/local/sbin/abaco-install-nomad"]
        assert "https://apt.releases.hashicorp.com" in script
        assert "apt-get install -y nomad" in script
        assert "systemctl restart nomad" in script
        shell = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True,
                               timeout=30, check=False)
        assert shell.returncode == 0, f"{kind}: {shell.stderr}"
        nomad_configs[kind] = hcl2.loads(files["/etc/nomad.d/abaco.hcl"])
        if kind == "server":
            assert "docker.io" not in document["packages"]
        else:
            assert "docker.io" in document["packages"], kind
            assert "systemctl enable --now docker" in script

    server = nomad_configs["server"]["server"][0]
    assert server["bootstrap_expect"] == 3
    join = server["server_join"][0]["retry_join"]
    assert join == ['"provider=aws region=us-east-1 tag_key=NomadCluster tag_value=abaco"']
    assert "client" not in nomad_configs["server"]

    for kind in ("client", "storage"):
        config = nomad_configs[kind]
        assert "server" not in config, kind
        assert config["client"][0]["server_join"][0]["retry_join"] == join
        docker = config["plugin"][0]['"docker"']["config"][0]
        assert docker["volumes"][0]["enabled"] is True, "the scheduler mounts docker.sock"
    assert "host_volume" not in nomad_configs["client"]["client"][0]
    volumes = {label.strip('"'): body["path"].strip('"')
               for block in nomad_configs["storage"]["client"][0]["host_volume"]
               for label, body in block.items()}
    assert volumes == {"abaco-redis": "/opt/abaco/redis", "abaco-minio": "/opt/abaco/minio"}
    for path in volumes.values():
        assert f'mkdir -p "{path}"' in rendered["storage"]


# --- validate and test, against mocked providers from the offline mirror


def test_cluster_module_validates(scratch):
    workdir = _init(scratch, "modules/cluster", "aws")
    done = _run(["validate"], workdir, scratch)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cluster_module_terraform_test(scratch):
    workdir = _init(scratch, "modules/cluster", "aws")
    done = _terraform_test(workdir, scratch)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Success! \d+ passed, 0 failed", done.stdout), done.stdout


def test_cluster_module_terraform_test_fails_when_the_module_is_wrong(scratch, tmp_path):
    """The harness can fail: servers that no longer expect server_count servers are caught."""
    workdir = _init(scratch, "modules/cluster", "aws")
    broken = tmp_path / "cluster"
    shutil.copytree(workdir, broken, symlinks=True)
    main = broken / "main.tf"
    text = main.read_text()
    assert "bootstrap_expect = var.server_count" in text
    main.write_text(text.replace("bootstrap_expect = var.server_count",
                                 "bootstrap_expect = var.server_count + 1"))
    done = _terraform_test(broken, scratch)
    assert done.returncode != 0, done.stdout
    assert 'run "one_server_instance_per_server_count"... fail' in done.stdout, done.stdout


def test_platform_module_validates_and_passes_terraform_test(scratch):
    workdir = _init(scratch, "modules/platform", "nomad")
    done = _run(["validate"], workdir, scratch)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _terraform_test(workdir, scratch)
    assert done.returncode == 0, done.stdout + done.stderr


def test_root_validates(scratch):
    workdir = _init(scratch, ".", "aws", "nomad")
    done = _run(["validate"], workdir, scratch)
    assert done.returncode == 0, done.stdout + done.stderr


# --- what a parser sees, no terraform needed


def _hcl(path: Path) -> dict[str, Any]:
    hcl2 = pytest.importorskip("hcl2")
    return hcl2.loads(path.read_text())


def _unquote(value: Any) -> Any:
    return value.strip('"') if isinstance(value, str) else value


def _variables(module: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in _hcl(path).get("variable", []):
            found.update({_unquote(name): body for name, body in block.items()})
    return found


def _blocks(module: Path, kind: str) -> dict[str, dict[str, Any]]:
    """Labelled blocks of one kind (module, output) across a module's files."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in _hcl(path).get(kind, []):
            found.update({_unquote(name): body for name, body in block.items()})
    return found


def _nomad_jobs(module: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in _hcl(path).get("resource", []):
            for name, body in block.get('"nomad_job"', {}).items():
                found[_unquote(name)] = body
    return found


def _modules() -> list[Path]:
    return [TERRAFORM_DIR, *sorted(p for p in MODULES.iterdir() if p.is_dir())]


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variable_and_output_is_typed_and_described(module):
    variables = _variables(module)
    assert variables, module
    for name, body in variables.items():
        assert "type" in body, f"variable {name} has no type"
        assert _unquote(body.get("description", "")).strip(), f"variable {name}: no description"
    for name, body in _blocks(module, "output").items():
        assert _unquote(body.get("description", "")).strip(), f"output {name}: no description"


@pytest.mark.parametrize("job", ["abaco", "redis", "minio"])
def test_the_platform_module_deploys_each_nomad_job_with_its_required_variables(job):
    spec = NOMAD_DIR / f"{job}.nomad.hcl"
    if not spec.exists():
        pytest.skip(f"{spec.relative_to(ROOT)} does not exist yet")
    platform = MODULES / "platform"
    locals_ = {k: v for path in platform.glob("*.tf") for block in _hcl(path).get("locals", [])
               for k, v in block.items()}
    jobs_dir = _unquote(locals_["jobs_dir"]).replace("${path.module}", str(platform))
    assert Path(jobs_dir).resolve() == NOMAD_DIR
    resource = _nomad_jobs(platform)[job]
    assert resource["jobspec"] == f'${{file("${{local.jobs_dir}}/{job}.nomad.hcl")}}'
    if job != "abaco":
        assert resource["count"] == f"${{var.deploy_{job} ? 1 : 0}}"

    required = {_unquote(name) for block in _hcl(spec).get("variable", [])
                for name, body in block.items() if "default" not in body}
    passed = resource["hcl2"][0]["vars"]
    if isinstance(passed, dict):
        assert required <= set(passed), f"{job}: missing {required - set(passed)}"
    else:  # a map variable, empty by default: the job must work without any
        assert not required, f"{job} requires {required}: pass them from the platform module"


@pytest.mark.parametrize("module", ["cluster", "platform"])
def test_the_root_passes_every_required_variable_of_each_module(module):
    call = _blocks(TERRAFORM_DIR, "module")[module]
    assert _unquote(call["source"]) == f"./modules/{module}"
    variables = _variables(MODULES / module)
    required = {name for name, body in variables.items() if "default" not in body}
    arguments = set(call) - {"source", "__is_block__", "__comments__"}
    assert required <= arguments, f"missing: {required - arguments}"
    assert arguments <= set(variables), f"not variables of {module}: {arguments - set(variables)}"


def _host_volume_sources(node: Any) -> set[str]:
    """Sources of every `volume` block of type "host" in a parsed job."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "volume" and isinstance(value, list):  # not volume_mount's volume = ...
                for block in value:
                    for body in block.values():
                        if isinstance(body, dict) and _unquote(body.get("type")) == "host":
                            found.add(_unquote(body["source"]))
            else:
                found |= _host_volume_sources(value)
    elif isinstance(node, list):
        for item in node:
            found |= _host_volume_sources(item)
    return found


def test_the_storage_client_declares_every_host_volume_the_jobs_mount():
    wanted: set[str] = set()
    for spec in sorted(NOMAD_DIR.glob("*.nomad.hcl")):
        wanted |= _host_volume_sources(_hcl(spec).get("job", []))
    if not wanted:
        pytest.skip("no job in nomad/ mounts a host volume yet")
    default = _variables(MODULES / "cluster")["host_volumes"]["default"]
    declared = {_unquote(name) for name in default}
    assert wanted <= declared, f"no client declares {wanted - declared}"


@pytest.mark.parametrize(("job", "port", "local"), [("redis", 6379, "redis_url"),
                                                    ("minio", 9000, "s3_endpoint")])
def test_the_roots_default_addresses_match_the_jobs_static_ports(job, port, local):
    spec = NOMAD_DIR / f"{job}.nomad.hcl"
    if not spec.exists():
        pytest.skip(f"{spec.relative_to(ROOT)} does not exist yet")
    text = spec.read_text()
    assert re.search(rf"static\s*=\s*{port}\b", text), f"{job} no longer listens on {port}"
    locals_ = {k: v for block in _hcl(TERRAFORM_DIR / "main.tf").get("locals", [])
               for k, v in block.items()}
    assert f"${{local.storage_ip}}:{port}" in locals_[local]
