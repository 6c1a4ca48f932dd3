"""The README says what the code does: its quickstart runs as printed, its settings are real."""

from __future__ import annotations

import re
import subprocess
from dataclasses import fields
from pathlib import Path

from jobs.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_every_setting_is_documented():
    table = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    for field in fields(Settings):
        assert f"`{field.name}`" in table, f"setting {field.name} missing from the README"


def test_the_quickstart_runs_as_printed(api_stack: Settings, tmp_path: Path):
    script = _block_after("## Quickstart").replace(
        "http://127.0.0.1:8000", f"http://127.0.0.1:{api_stack.api_port}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert '"status":"READY"' in done.stdout
    assert "Contents of MSG: hello world" in done.stdout
    assert "GREETING=hi" in done.stdout
    assert "Contents of MSG: once more" in done.stdout
    assert '"totalExecutions":' in done.stdout
