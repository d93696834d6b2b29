"""The README's examples run against a local stack (the Python ones as scripts, the web one in
Chromium on the stack's sandbox page), and the demo passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.browser import chromium
from tests.support.local_stack import ensure_user, login_over_https

ROOT = Path(__file__).resolve().parents[2]


def readme_python_blocks(device: bool = False) -> list[str]:
    """The README's Python examples: the device's (an X.509 thing) or all the others."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [block for block in blocks if ("X509" in block) == device]


@pytest.fixture(scope="module")
def stack_env(shared_stack: LocalStack) -> dict[str, str]:
    """The environment a developer gets from `source .tidings/local.env`, plus user ann."""
    ensure_user(shared_stack, "ann", "ann-secret-2026", {"acme"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TIDINGS_"))}
    env.update(shared_stack.settings())
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_readme_has_python_examples() -> None:
    assert len(readme_python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_readme_python_example_runs(index: int, tmp_path: Path, stack_env) -> None:
    script = tmp_path / f"example_{index}.py"
    script.write_text(readme_python_blocks()[index], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=stack_env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_demo_exits_zero_and_shows_the_refusals(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "demo", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "refused, as it must be" in result.stdout
    assert "Demo OK" in result.stdout
    assert result.stdout.count(" <- ") == 6  # every expected change, once
    # the functions' logs are in the file it names, not mixed into the story
    log = tmp_path / "functions.log"
    assert f"the functions' logs: {log}" in result.stdout
    assert "batch published" in log.read_text(encoding="utf-8")
    assert "batch published" not in result.stdout + result.stderr
    assert '"level":"ERROR"' not in log.read_text(encoding="utf-8")


def readme_js_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```js\n(.*?)```", text, flags=re.S)


def test_readme_web_example_runs_in_chromium(stack_env: dict[str, str], shared_stack) -> None:
    [example] = readme_js_blocks()
    ann = login_over_https(shared_stack, "ann", "ann-secret-2026")["identityId"]
    dynamodb = shared_stack.client("dynamodb")
    with chromium(shared_stack.ca_file) as browser:
        page = browser.new_page()
        said: list[str] = []
        page.on("console", lambda message: said.append(message.text))
        page.on("pageerror", lambda error: said.append(f"pageerror: {error}"))
        page.goto(shared_stack.web_url + "sandbox.html")  # "@tidings/client" by its import map
        page.add_script_tag(content=example, type="module")  # the example as written
        deadline = time.monotonic() + 60
        n = 0
        while not any(line.startswith("todo ") for line in said) and time.monotonic() < deadline:
            if "state: live" in said:  # write until the loop's subscription sees one
                n += 1
                dynamodb.put_item(
                    TableName=shared_stack.tables["TodosTable"],
                    Item={"owner": {"S": ann}, "id": {"S": f"web{n}"}, "title": {"S": "buy milk"}},
                )
            page.wait_for_timeout(1000)  # Playwright hands over console events while it waits
        while "state: signed_out" not in said and time.monotonic() < deadline:
            page.wait_for_timeout(200)
    assert [line for line in said if line.startswith("pageerror")] == []
    assert any(re.fullmatch(r"todo \d+ insert buy milk", line) for line in said), said
    assert "refused: AccessDenied" in said, said
    assert any(re.fullmatch(r"scores cursor \d+", line) for line in said), said
    assert said.index("state: live") < said.index("state: signed_out"), said


def readme_device_commands() -> list[list[str]]:
    """The `tidings devices` lines of the README's sh blocks, block by block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [
        [line.split("#")[0].strip() for line in block.splitlines() if "tidings devices" in line]
        for block in blocks
        if "tidings devices" in block and "tidings greengrass" not in block
    ]


def test_readme_device_commands_and_example_run(
    stack_env: dict[str, str], shared_stack, tmp_path: Path
) -> None:
    (tmp_path / ".tidings").symlink_to(shared_stack.config.state_dir)  # `tidings up` was here
    first, last = readme_device_commands()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def run(line: str) -> str:
        assert line.startswith(".venv/bin/tidings devices "), line
        args = line.split()[1:]
        done = subprocess.run(
            [sys.executable, "-m", "infra.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done.stdout

    outputs = [run(line) for line in first]
    assert "pump-1" in outputs[-1]  # listed
    shared_stack.client("dynamodb").put_item(
        TableName=shared_stack.tables["DeviceSettingsTable"],
        Item={"thing": {"S": "pump-1"}, "setting": {"S": "rate"}, "value": {"N": "5"}},
    )
    [example] = readme_python_blocks(device=True)
    script = tmp_path / "device_example.py"
    script.write_text(example, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=stack_env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(r"^1 insert \{.*'value': 5", result.stdout, re.MULTILINE), result.stdout
    for line in last:
        run(line)
    assert "pump-1" not in run(".venv/bin/tidings devices list")
