"""Build the test actor images locally (no registry is needed or reachable).

Each image is ``FROM scratch`` plus Debian's static busybox and a small shell
script. Run ``python images/build.py``; tests and benches call ``build_all()``.

- abaco-test-echo: prints ``Contents of MSG: $MSG``, then its environment, then the
  size of a binary message if there is one; sleeps ``$SLEEP`` s if set.
- abaco-test-fail: prints a line, exits ``${EXIT_CODE:-3}``.
- abaco-test-sleep: sleeps ``${SLEEP:-60}`` s (a long-running actor).
- abaco-test-noop: exits 0 at once (benchmarks).
- abaco-test-token: POSTs ``{"count": 1, "by": <user>}`` to its own state with its
  ``_abaco_access_token`` (needs the host network to reach the API).
- abaco-test-memhog: holds ``${MB:-64}`` MiB of shell strings, then sleeps ``$SLEEP`` s.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

SCRIPTS = {
    "abaco-test-echo": """
echo "Contents of MSG: $MSG"
env
if [ -f /_abaco_binary_data ]; then
  echo "binary bytes: $(wc -c < /_abaco_binary_data)"
fi
if [ -n "$SLEEP" ]; then sleep "$SLEEP"; fi
""",
    "abaco-test-fail": """
echo "about to fail with ${EXIT_CODE:-3}"
exit "${EXIT_CODE:-3}"
""",
    "abaco-test-sleep": """
echo "sleeping ${SLEEP:-60}"
sleep "${SLEEP:-60}"
echo done
""",
    "abaco-test-noop": "exit 0\n",
    "abaco-test-token": """
wget -q -O- --header "Authorization: Bearer $_abaco_access_token" \\
  --header "Content-Type: application/json" \\
  --post-data "{\\"count\\": 1, \\"by\\": \\"$_abaco_username\\"}" \\
  "$_abaco_api_server/actors/$_abaco_actor_id/state"
""",
    "abaco-test-memhog": """
x=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
i=0
while [ $i -lt 14 ]; do x="$x$x"; i=$((i+1)); done
n=0
while [ $n -lt "${MB:-64}" ]; do eval "keep_$n=\\$x"; n=$((n+1)); done
echo "held ${MB:-64} MiB"
if [ -n "$SLEEP" ]; then sleep "$SLEEP"; fi
""",
}

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY run.sh /run.sh
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "/run.sh"]
"""


def static_busybox() -> Path:
    """Debian's busybox-static: a shell that runs in an empty image."""
    found = shutil.which("busybox")
    if not found:
        raise SystemExit("busybox not found: apt-get install busybox-static")
    ldd = subprocess.run(["ldd", found], capture_output=True, text=True, check=False)
    if "not a dynamic executable" not in (ldd.stdout + ldd.stderr) and "statically" not in (
            ldd.stdout + ldd.stderr):
        raise SystemExit(f"{found} is dynamically linked: apt-get install busybox-static")
    return Path(found)


def _context(script: str, busybox: Path) -> io.BytesIO:
    return build_context({"run.sh": script.encode(), "Dockerfile": DOCKERFILE.encode()},
                         {"busybox": busybox})


def build_context(files: dict[str, bytes], trees: dict[str, Path] | None = None) -> io.BytesIO:
    """A build context in memory: ``files`` by name (executable), ``trees`` copied from
    the host under the names given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in (trees or {}).items():
            tar.add(str(path), arcname=name)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def build_all(client: object | None = None, quiet: bool = True) -> list[str]:
    """Build every test image with the Docker SDK; returns their tags."""
    import docker

    client = client or docker.from_env(version="auto")
    busybox = static_busybox()
    for tag, script in SCRIPTS.items():
        context = _context(script, busybox)
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)  # type: ignore[attr-defined]
        if not quiet:
            print(f"built {tag}")
    return list(SCRIPTS)


PYTHON_IMAGE = "abaco-test-python"
PYTHON_BASE = "abaco-test-python-base"
# What the Abaco SDK (agavepy 0.9.5) needs to import and send results, as wheels.
PYTHON_PACKAGES = ["agavepy==0.9.5", "cloudpickle", "requests", "python-dateutil", "future",
                   "six", "requests-toolbelt", "websocket-client==0.53.0", "jinja2",
                   "markupsafe", "configparser", "urllib3", "idna", "certifi",
                   "charset-normalizer", "py"]
PYTHON_ACTOR = """
import os
from agavepy.actors import get_context, send_bytes_result, send_python_result

context = get_context()
send_bytes_result(("bytes for " + os.environ.get("MSG", "")).encode())
send_python_result({"answer": 42, "actor": context["actor_id"]})
print("sent two results")
"""


def build_python(client: object | None = None, work: Path | None = None,
                 quiet: bool = True) -> str:
    """abaco-test-python: Debian bookworm (debootstrap minbase, from Debian's registry)
    with python3, and agavepy with its dependencies installed from wheels downloaded on
    the host (pip inside a build cannot verify TLS here). Built once; reused after."""
    import docker

    client = client or docker.from_env(version="auto")
    images = client.images  # type: ignore[attr-defined]
    try:
        images.get(PYTHON_IMAGE)
        return PYTHON_IMAGE
    except docker.errors.ImageNotFound:
        pass
    work = work or Path("/tmp/abaco-python-image")
    _python_base(images, work, quiet)
    site = work / "site"
    if not site.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--only-binary=:all:", "--target", str(site), *PYTHON_PACKAGES],
                       check=True)
    buffer = build_context({"actor.py": PYTHON_ACTOR.encode(), "Dockerfile": (
        f"FROM {PYTHON_BASE}\nCOPY site /usr/local/lib/python3.11/dist-packages\n"
        "COPY actor.py /actor.py\nCMD [\"python3\", \"/actor.py\"]\n").encode()},
        {"site": site})
    images.build(fileobj=buffer, custom_context=True, tag=PYTHON_IMAGE, rm=True)
    if not quiet:
        print(f"built {PYTHON_IMAGE}")
    return PYTHON_IMAGE


def _python_base(images: Any, work: Path, quiet: bool) -> None:
    import docker

    try:
        images.get(PYTHON_BASE)
        return
    except docker.errors.ImageNotFound:
        pass
    root = work / "root"
    if not (root / "usr" / "bin" / "python3").exists():
        if not shutil.which("debootstrap"):
            raise SystemExit("debootstrap not found: apt-get install debootstrap")
        if not quiet:
            print("debootstrap bookworm (about a minute)...")
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm",
                        str(root), "http://deb.debian.org/debian"], check=True,
                       capture_output=quiet)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    images.client.api.import_image_from_stream(tar.stdout, repository=PYTHON_BASE)
    tar.wait()


if __name__ == "__main__":
    build_all(quiet=False)
    if "--python" in sys.argv:
        build_python(quiet=False)
    sys.exit(0)


RELAY_IMAGE = "abaco-test-relay"


def build_relay(client: object | None = None, quiet: bool = True) -> str:
    """abaco-test-relay: the results relay of the Nomad runner (``jobs/results_relay.py``,
    standard library only) on the Python base, standing in for the platform image. Rebuilt
    when the relay's source changes (a label holds its hash)."""
    import hashlib

    import docker

    client = client or docker.from_env(version="auto")
    images = client.images  # type: ignore[attr-defined]
    source = (Path(__file__).resolve().parent.parent / "jobs" / "results_relay.py").read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    try:
        if images.get(RELAY_IMAGE).labels.get("abaco.relay") == digest:
            return RELAY_IMAGE
    except docker.errors.ImageNotFound:
        pass
    _python_base(images, Path("/tmp/abaco-python-image"), quiet)
    buffer = build_context({"jobs/__init__.py": b"", "jobs/results_relay.py": source, (
        "Dockerfile"): (f"FROM {PYTHON_BASE}\nCOPY jobs /app/jobs\nWORKDIR /app\n"
                        f"LABEL abaco.relay={digest}\n"
                        'CMD ["python3", "-m", "jobs.results_relay"]\n').encode()})
    images.build(fileobj=buffer, custom_context=True, tag=RELAY_IMAGE, rm=True)
    if not quiet:
        print(f"built {RELAY_IMAGE}")
    return RELAY_IMAGE
