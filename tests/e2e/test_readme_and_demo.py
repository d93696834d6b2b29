"""The README's Python examples run against a local stack, and the demo passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user

ROOT = Path(__file__).resolve().parents[2]


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def stack_env(shared_stack: LocalStack) -> dict[str, str]:
    """The environment a developer gets from `source .tidings/local.env`, plus user ann."""
    add_user(shared_stack, "ann", "ann-secret-2026", {"acme"})
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
