"""The ``abaco`` client commands against a running platform (``abaco up`` on the test
ports): in-process through click's runner, and as real processes where pipes, exit
statuses and timing matter (``send --follow`` must pass lines on before the end)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from werkzeug.serving import make_server

from jobs.settings import Settings
from launcher.cli import cli
from launcher.cli_config import ConfigError, resolve
from launcher.cli_run import exit_status
from launcher.client import ApiError, Client, Execution
from tests.conftest import ROOT

CLIENT_VARS = ("ABACO_URL", "ABACO_TOKEN", "ABACO_TOKEN_FILE", "ABACO_TENANT", "ABACO_CONFIG")


@pytest.fixture(scope="module")
def url(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}"


@pytest.fixture
def env(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI process: this stack's URL, and no config file of the
    developer's (XDG_CONFIG_HOME is empty) nor any client variable of theirs; stdout
    buffered as it is for any user (so the CLI must flush what it streams)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in CLIENT_VARS and k != "PYTHONUNBUFFERED"}  # a pipe buffers, as usual
    return {**clean, "ABACO_URL": url, "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "COLUMNS": "200"}


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    """``abaco ARGS`` in this process (click's runner: stdout and stderr apart)."""
    overrides: dict[str, str | None] = {k: None for k in CLIENT_VARS}
    overrides.update({k: v for k, v in env.items() if k in (*CLIENT_VARS, "XDG_CONFIG_HOME",
                                                               "COLUMNS")})
    return CliRunner().invoke(cli, list(args), env=overrides, input=input,
                              catch_exceptions=False)


def ok(env: dict[str, str], *args: str) -> str:
    result = run(env, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def process(env: dict[str, str], *args: str, stderr: Any = subprocess.PIPE,
            ) -> subprocess.Popen[bytes]:
    """``abaco ARGS`` as a real process, through the installed entry point."""
    return subprocess.Popen([str(Path(sys.executable).parent / "abaco"), *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr)


def finish(proc: subprocess.Popen[bytes], timeout_s: float = 90) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out.decode(), (err or b"").decode()


def ready_actor(env: dict[str, str], *args: str) -> str:
    """``abaco actors create ... --wait``: the id of an actor that is READY."""
    return ok(env, "actors", "create", "--wait", *args).strip()


class Lines:
    """A process's stdout read line by line in a thread, each line with the moment it
    came, so a test can wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: queue.Queue[bytes] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        self.thread = threading.Thread(
            target=lambda: [self.lines.put(line) for line in iter(stdout.readline, b"")],
            daemon=True)
        self.thread.start()

    def next(self, timeout_s: float) -> str:
        try:
            return self.lines.get(timeout=timeout_s).decode()
        except queue.Empty:
            raise AssertionError(f"no line within {timeout_s:g} s") from None

    def rest(self, timeout_s: float) -> str:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "stdout did not close"
        return "".join(line.decode() for line in list(self.lines.queue))


# -- against the running platform


def test_actors_create_list_show_update_delete(env: dict[str, str]):
    aid = ready_actor(env, "--image", "abaco-test-echo", "--name", "cli-crud",
                      "-e", "GREETING=hi", "--hint", "demo")
    assert ok(env, "actors", "list").count(aid) == 1
    listed = json.loads(ok(env, "actors", "list", "--json"))
    mine = next(a for a in listed if a["id"] == aid)
    assert mine["name"] == "cli-crud" and mine["status"] == "READY"
    shown = json.loads(ok(env, "actors", "show", aid, "--json"))
    assert shown["defaultEnvironment"] == {"GREETING": "hi"} and shown["hints"] == ["demo"]
    table = ok(env, "actors", "show", aid)
    assert "abaco-test-echo" in table and "cli-crud" in table
    updated = run(env, "actors", "update", aid, "--description", "changed", "--force")
    assert updated.exit_code == 0 and "revision 2" in updated.stderr
    again = json.loads(ok(env, "actors", "show", aid, "--json"))
    assert again["description"] == "changed" and again["revision"] == 2
    assert again["name"] == "cli-crud", "fields not given keep their value"
    deleted = run(env, "actors", "delete", aid)
    assert deleted.exit_code == 0 and f"actor {aid} deleted" in deleted.stderr
    gone = run(env, "actors", "show", aid)
    assert gone.exit_code == 1 and gone.stdout == ""
    assert gone.stderr.startswith("abaco actors show: ") and "(HTTP 404)" in gone.stderr


def test_send_follow_prints_lines_before_the_execution_ends(env: dict[str, str], url: str):
    """The slow actor prints a line, sleeps 3 s in its container, prints another. The
    first line must reach the CLI's stdout (a pipe) while the execution still runs."""
    aid = ready_actor(env, "--image", "abaco-test-sleep", "-e", "SLEEP=3")
    proc = process(env, "send", aid, "go", "--follow")
    lines = Lines(proc)
    eid = lines.next(30).strip()
    assert lines.next(60) == "sleeping 3\n"
    during = Client(url).execution(aid, eid)
    assert during.status == "RUNNING", "the line came only after the execution ended"
    code = proc.wait(60)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert lines.rest(10) == "done\n"
    assert code == 0, err
    assert f"execution {eid}: COMPLETE, exit code 0" in err
    assert "\x1b" not in err, "no spinner or colour when stderr is not a terminal"


def test_send_exit_status_is_the_executions(env: dict[str, str]):
    failing = ready_actor(env, "--image", "abaco-test-fail", "-e", "EXIT_CODE=3")
    code, out, err = finish(process(env, "send", failing, "x", "--wait"))
    eid = out.strip()
    assert code == 3
    assert re.fullmatch(rf"execution {eid}: COMPLETE, exit code 3, queued [0-9.]+ s, "
                        r"ran [0-9.]+ s\n", err), err
    code, out, err = finish(process(env, "send", failing, "x", "--follow", "-e", "EXIT_CODE=0"))
    assert code == 0 and out.splitlines()[1:] == ["about to fail with 0"], err
    echo = ready_actor(env, "--image", "abaco-test-echo")
    code, out, _ = finish(process(env, "send", echo, "hello", "--wait", "--json"))
    record = json.loads(out)
    assert code == 0 and record["status"] == "COMPLETE" and record["exitCode"] == 0
    code, out, err = finish(process(env, "send", echo, "hello"))
    assert code == 0 and len(out.split()) == 1 and err == "", "no wait: the id alone"


def test_logs_executions_and_workers(env: dict[str, str]):
    aid = ready_actor(env, "--image", "abaco-test-echo", "--min-workers", "1")
    eid = ok(env, "send", aid, "--wait", "first message").strip()
    plain = ok(env, "logs", aid, eid)
    assert "Contents of MSG: first message" in plain
    followed = run(env, "logs", aid, eid, "--follow")
    assert followed.exit_code == 0 and followed.stdout == plain
    assert json.loads(ok(env, "logs", aid, eid, "--json"))["logs"] == plain
    second = ok(env, "send", aid, '{"n": 2}', "--json-message", "--wait").strip()
    listing = ok(env, "executions", aid)
    assert eid in listing and second in listing and "2 executions" in listing
    page = json.loads(ok(env, "executions", aid, "--json", "--limit", "1"))
    assert page["totalExecutions"] == 2 and len(page["executions"]) == 1
    one = json.loads(ok(env, "executions", aid, second, "--json"))
    assert one["exitCode"] == 0 and one["status"] == "COMPLETE"
    workers = json.loads(ok(env, "workers", aid, "--json"))
    assert workers and all(w["status"] for w in workers)
    assert workers[0]["id"] in ok(env, "workers", aid)


def test_state_share_nonce_alias(env: dict[str, str]):
    aid = ok(env, "actors", "create", "--image", "abaco-test-echo", "--stateful").strip()
    assert json.loads(ok(env, "state", aid, "--set", '{"count": 1}')) == {"count": 1}
    assert json.loads(ok(env, "state", aid)) == {"count": 1}
    stateless = ok(env, "actors", "create", "--image", "abaco-test-echo").strip()
    refused = run(env, "state", stateless, "--set", "1")
    assert refused.exit_code == 1 and "abaco state: " in refused.stderr
    assert "(HTTP 404)" in refused.stderr

    grants = ok(env, "share", aid, "bob", "read")
    assert "bob" in grants and "READ" in grants
    assert json.loads(ok(env, "share", aid, "--json"))["bob"] == "READ"
    ok(env, "share", aid, "bob", "NONE")
    assert "bob" not in json.loads(ok(env, "share", aid, "--json"))

    nid = ok(env, "nonce", "create", aid, "--level", "READ", "--max-uses", "2").strip()
    assert [n["id"] for n in json.loads(ok(env, "nonce", "list", aid, "--json"))] == [nid]
    assert json.loads(ok(env, "nonce", "show", aid, nid, "--json"))["remainingUses"] == 2
    ok(env, "nonce", "delete", aid, nid)
    assert json.loads(ok(env, "nonce", "list", aid, "--json")) == []

    name = f"cli-{aid.lower()}"
    ok(env, "alias", "create", name, aid)
    assert {"alias": name, "actorId": aid}.items() <= next(
        a for a in json.loads(ok(env, "alias", "list", "--json")) if a["alias"] == name).items()
    assert json.loads(ok(env, "actors", "show", name, "--json"))["id"] == aid
    ok(env, "alias", "update", name, stateless)
    assert json.loads(ok(env, "alias", "show", name, "--json"))["actorId"] == stateless
    ok(env, "share", name, "carol", "EXECUTE", "--alias")
    assert json.loads(ok(env, "share", name, "--alias", "--json"))["carol"] == "EXECUTE"
    ok(env, "alias", "delete", name)
    assert run(env, "alias", "show", name).exit_code == 1


def test_tables_fit_the_terminal_and_keep_ids_whole(env: dict[str, str]):
    aid = ready_actor(env, "--image", "abaco-test-echo", "--name", "x" * 120,
                      "--description", "a long description " * 10)
    narrow = {**env, "COLUMNS": "70"}
    text = ok(narrow, "actors", "list")
    assert all(len(line) <= 70 for line in text.splitlines()), text
    assert aid in text
    shown = ok(narrow, "actors", "show", aid)
    assert all(len(line) <= 70 for line in shown.splitlines()), shown


def test_the_spinner_shows_status_and_queue_time_on_a_terminal(env: dict[str, str]):
    """stderr on a pseudo-terminal: the spinner says where the execution is; stdout, a
    pipe, still gets only the execution id."""
    import pty

    aid = ready_actor(env, "--image", "abaco-test-sleep", "-e", "SLEEP=2")
    controller, terminal = pty.openpty()
    proc = process(env, "send", aid, "go", "--wait", stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    code, out, _ = finish(proc)
    text = seen.decode(errors="replace")
    assert code == 0 and len(out.split()) == 1
    assert "RUNNING" in text and "queued" in text, text
    assert "COMPLETE, exit code 0" in text


def _cli_quickstart() -> str:
    """The README's "CLI quickstart" block, as printed."""
    section = (ROOT / "README.md").read_text().split("## CLI quickstart", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_cli_quickstart_runs_as_printed(env: dict[str, str], tmp_path: Path):
    path = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _cli_quickstart()],
                          env={**env, "PATH": path}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "Contents of MSG: hello world" in done.stdout
    assert "GREETING=hi" in done.stdout and "Contents of MSG: once more" in done.stdout
    assert '"exitCode": 0' in done.stdout and "bob" in done.stdout
    assert "COMPLETE, exit code 0" in done.stderr


# -- where the client goes, and what it sends


def test_a_token_goes_as_bearer_or_as_the_tenants_assertion(jwt_settings: Settings,
                                                            env: dict[str, str],
                                                            tmp_path: Path):
    from api.app import create_app
    from tests.jwt_users import token

    server = make_server("127.0.0.1", 0, create_app(jwt_settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = {**env, "ABACO_URL": f"http://127.0.0.1:{server.server_port}"}
        refused = run(local, "actors", "list")
        assert refused.exit_code == 1 and "(HTTP 401)" in refused.stderr
        assert refused.stderr.startswith("abaco actors list: no credentials")
        alice = token("alice")
        made = ok(local, "--token", alice, "actors", "create", "--image", "abaco-test-echo")
        assert json.loads(ok({**local, "ABACO_TOKEN": alice}, "actors", "list", "--json"))[0][
            "owner"] == "alice"
        assert made.strip() in ok(local, "--token", alice, "--tenant", "dev", "actors", "list")
        (tmp_path / "bob.jwt").write_text(token("bob") + "\n")
        bob = json.loads(ok(local, "--token-file", str(tmp_path / "bob.jwt"), "actors", "list",
                            "--json"))
        assert bob == [], "bob sees none of alice's actors"
        wrong = run(local, "--token", alice, "--tenant", "OTHER", "actors", "list")
        assert wrong.exit_code == 1 and "(HTTP 401)" in wrong.stderr
    finally:
        server.shutdown()


def test_url_and_token_from_flags_then_environment_then_config(tmp_path: Path):
    config = tmp_path / "abaco.toml"
    config.write_text('url = "http://config:1"\ntoken = "from-config"\ntenant = "DEV"\n')
    env = {"ABACO_CONFIG": str(config)}
    target = resolve({}, env)
    assert (target.url, target.token, target.tenant) == ("http://config:1", "from-config", "DEV")
    assert target.sources["url"].startswith("config file")
    target = resolve({}, {**env, "ABACO_URL": "http://env:2", "ABACO_TOKEN": "from-env"})
    assert (target.url, target.token) == ("http://env:2", "from-env")
    target = resolve({"url": "http://flag:3", "token": "from-flag"},
                     {**env, "ABACO_URL": "http://env:2"})
    assert (target.url, target.token, target.sources["url"]) == ("http://flag:3", "from-flag",
                                                                  "flag")
    (tmp_path / "t.jwt").write_text("from-file\n")
    assert resolve({}, {**env, "ABACO_TOKEN_FILE": str(tmp_path / "t.jwt")}).token == "from-file"
    xdg = tmp_path / "xdg"
    assert resolve({}, {"XDG_CONFIG_HOME": str(xdg)}).url == "http://127.0.0.1:8000"
    (xdg / "abaco").mkdir(parents=True)
    (xdg / "abaco" / "config.toml").write_text('url = "http://xdg:4"\n')
    assert resolve({}, {"XDG_CONFIG_HOME": str(xdg)}).url == "http://xdg:4"
    for bad, says in (("url = 1\n", "url must be a string"), ("nope = 'x'\n", "unknown key"),
                      ("url = \n", "not valid TOML")):
        config.write_text(bad)
        with pytest.raises(ConfigError, match=says):
            resolve({}, env)
    with pytest.raises(ConfigError, match="cannot read"):
        resolve({}, {"ABACO_CONFIG": str(tmp_path / "missing.toml")})


def test_client_errors_are_one_line_and_exit_1(tmp_path: Path):
    base = {"XDG_CONFIG_HOME": str(tmp_path), "ABACO_URL": "http://127.0.0.1:9"}
    down = run(base, "actors", "list")
    assert down.exit_code == 1 and down.stdout == ""
    assert down.stderr.startswith("abaco actors list: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in down.stderr and len(down.stderr.splitlines()) == 1
    (tmp_path / "bad.toml").write_text("url = [")
    bad = run({**base, "ABACO_CONFIG": str(tmp_path / "bad.toml")}, "send", "a", "m")
    assert bad.exit_code == 1 and bad.stderr.startswith("abaco send: config file ")
    usage = run(base, "send", "a", "m", "--follow", "--json")
    assert usage.exit_code == 2


def test_the_stack_commands_keep_their_form(api_stack: Settings):
    env = {**os.environ, **api_stack.as_env()}
    status = subprocess.run([sys.executable, "-m", "launcher.cli", "status"], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0 and any(line.startswith("api") and "running" in line
                                          for line in status.stdout.splitlines())
    bad = subprocess.run([sys.executable, "-m", "launcher.cli", "status"],
                         env={**env, "ABACO_API_PORT": "many"}, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("abaco status: setting api_port")
    missing = subprocess.run([sys.executable, "-m", "launcher.cli", "worker", "--tenant", "T"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 2 and "--actor" in missing.stderr


def test_exit_status_of_each_ending():
    def ended(status: str, exit_code: int | None) -> Execution:
        return Execution.from_result({"id": "e", "status": status, "exitCode": exit_code})

    assert exit_status(ended("COMPLETE", 0)) == 0
    assert exit_status(ended("COMPLETE", 137)) == 3
    assert exit_status(ended("COMPLETE", None)) == 3
    assert exit_status(ended("ERROR", None)) == 4
    snake = Execution.from_result({"id": "e", "status": "COMPLETE", "exit_code": 0,
                                   "queue_time": 0.5})
    assert snake.succeeded and snake.waited_s() == 0.5


def test_api_error_carries_status_and_message(url: str):
    with pytest.raises(ApiError) as caught:
        Client(url).get_actor("no-such-actor")
    assert caught.value.status == 404 and "no-such-actor" in caught.value.message
    with pytest.raises(ApiError) as caught:
        Client(url).get_actor("../../v3/tenants")
    assert caught.value.status is None and "not a valid id" in caught.value.message


# -- found by an attack round ------------------------------------------------------------

def test_into_a_pipe_a_table_keeps_each_value_on_one_line(env: dict[str, str]):
    """Cells wrapped at 80 columns split values across lines for grep and awk."""
    long = "a description long enough to be wrapped by any table " * 3
    aid = ready_actor(env, "--image", "abaco-test-echo", "--description", long.strip())
    piped = {k: v for k, v in env.items() if k != "COLUMNS"}
    shown = ok(piped, "actors", "show", aid)
    assert long.strip() in shown.splitlines()[[i for i, line in enumerate(shown.splitlines())
                                               if "description" in line][0]]
    assert any(aid in line and "READY" in line for line in ok(piped, "actors",
                                                              "list").splitlines())
    narrow = ok({**env, "COLUMNS": "5"}, "actors", "list")
    assert aid in narrow  # never cut, however narrow


def test_an_id_that_names_another_route_is_refused(env: dict[str, str]):
    """The server decodes %2F before routing: 'aliases/x' reached the alias route."""
    for odd in ("aliases/my-alias", "..", "a%2Fb", "a b"):
        refused = run(env, "actors", "delete", odd)
        assert refused.exit_code == 1, odd
        assert "is not a valid id or name" in refused.stderr
    aid = ready_actor(env, "--image", "abaco-test-echo")
    ok(env, "alias", "create", f"route-word-{aid.lower()}", aid)
    shown = run(env, "actors", "show", "aliases")  # a route's word: its reply is a list
    assert shown.exit_code == 1 and "not what this command reads" in shown.stderr


def test_a_token_a_header_cannot_carry_is_a_config_error(env: dict[str, str],
                                                         tmp_path: Path):
    for token in ("tok\u00e9", "abc\u20ac", "eyJ.x\r\nX-Evil: 1"):
        refused = run({**env, "ABACO_TOKEN": token}, "actors", "list")
        assert refused.exit_code == 1 and "printable ASCII" in refused.stderr
        assert token not in refused.stderr
    (tmp_path / "t").write_bytes(b"\xff\xfe")
    refused = run({**env, "ABACO_TOKEN_FILE": str(tmp_path / "t")}, "actors", "list")
    assert refused.exit_code == 1 and "printable ASCII" in refused.stderr


def test_a_closed_pipe_ends_the_command_quietly(env: dict[str, str]):
    aid = ready_actor(env, "--image", "abaco-test-echo")
    eid = ok(env, "send", aid, "hello", "--wait").strip()
    reader = subprocess.run(
        f"'{Path(sys.executable).parent / 'abaco'}' logs {aid} {eid} | head -c 1; "
        "echo \" ${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", env=env,
        capture_output=True, text=True, timeout=60, check=False)
    assert reader.stdout.split()[-1] in ("0", "141"), reader
    assert "Traceback" not in reader.stderr and "Error" not in reader.stderr
