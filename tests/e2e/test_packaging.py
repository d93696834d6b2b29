"""The two distributions, built as wheels and installed into fresh virtual environments.

``tidings-client`` installs without boto3 or anything of the backend and runs the README's
client examples against a local stack; ``tidings[local]`` installs with the constraints
file and ``tidings up`` runs from an empty folder, answers, and stops cleanly on SIGINT.
Nothing here imports the installed code: each check runs the fresh environment's own
interpreter in a folder outside the checkout, with no PYTHONPATH.

The wheels are built from a clean copy of the sources (no build/ left over from an earlier
build can leak into them) with the development environment's setuptools, and installed by
its pip (``pip --python``) from PyPI or pip's cache, at the versions of constraints.txt.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
BACKEND_DISTRIBUTIONS = {
    "boto3",
    "botocore",
    "moto",
    "argon2-cffi",
    "argon2-cffi-bindings",
    "aws-lambda-powertools",
    "pyjwt",
    "pyyaml",
    "cryptography",
    "tidings",
}
"""What a client must not get: the backend's dependencies and the backend itself."""

pytestmark = pytest.mark.timeout(900)


def run(command: list[str | Path], *, timeout: float = 600, **options) -> str:
    """Run a command; its stdout, or a failure that shows its output."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def pip(venv: Path, *args: str | Path) -> str:
    """The development environment's pip, acting on ``venv``."""
    python = venv / "bin" / "python"
    return run([sys.executable, "-m", "pip", "--python", python, *args])


def fresh_venv(path: Path) -> Path:
    """A new virtual environment without the system's site-packages (and without pip: the
    development environment's pip installs into it)."""
    run([sys.executable, "-m", "venv", "--without-pip", path], timeout=120)
    return path


def installed(venv: Path) -> set[str]:
    listed = json.loads(pip(venv, "list", "--format", "json", "--disable-pip-version-check"))
    return {entry["name"].lower().replace("_", "-") for entry in listed}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment less anything that would point at the checkout or an AWS account."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TIDINGS_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def copy_sources(target: Path) -> Path:
    """What the two projects are built from, without caches or earlier build output."""
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "node_modules"
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("backend", "auth", "infra", "client_sdk"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    shutil.copytree(ROOT / "clients", target / "clients", ignore=ignore)
    return target


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``tidings-client`` and ``tidings``, built as a user of the repository would."""
    source = copy_sources(tmp_path_factory.mktemp("source"))
    dist = tmp_path_factory.mktemp("dist")
    for project in (source / "clients" / "python", source):
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                dist,
                project,
            ],
            cwd=dist,
        )
    (client,) = dist.glob("tidings_client-*.whl")
    (tidings,) = dist.glob("tidings-*.whl")
    return {"client": client, "tidings": tidings}


def readme_client_examples() -> list[str]:
    """The Python blocks of the README's client section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The Python client") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    """What `source .tidings/local.env` gives a developer, plus the README's user ann."""
    with LocalStack(stack_config()) as stack:
        add_user(stack, "ann", "ann-secret-2026", {"acme"})
        yield clean_env(**stack.settings())


def test_the_client_wheel_installs_alone_and_runs_the_readme_examples(
    wheels: dict[str, Path], stack_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    venv = fresh_venv(tmp_path / "client-venv")
    pip(venv, "install", "--quiet", "--no-compile", "-c", CONSTRAINTS, wheels["client"])
    print(f"client wheel installed in {time.monotonic() - started:.1f} s")
    names = installed(venv)
    assert {"tidings-client", "awscrt", "awsiotsdk"} <= names
    assert not names & BACKEND_DISTRIBUTIONS, names & BACKEND_DISTRIBUTIONS
    assert "awsiotpythonsdk" not in names  # only with the v1 extra

    python = venv / "bin" / "python"
    where = run(
        [
            python,
            "-c",
            "import sys, importlib.resources, client_sdk; "
            "assert 'boto3' not in sys.modules and 'backend' not in sys.modules; "
            "assert importlib.resources.files('client_sdk').joinpath('py.typed').is_file(); "
            "import client_sdk.greengrass.component; "
            "recipe = importlib.resources.files('client_sdk.greengrass') / 'recipe.yaml'; "
            "assert 'com.tidings.Channels' in recipe.read_text(); "
            "print(client_sdk.__file__)",
        ],
        cwd=tmp_path,
        env=clean_env(),
    )
    assert Path(where.strip()).is_relative_to(venv), where

    # the examples write their item with boto3, as the app's backend would: the app brings it
    pip(venv, "install", "--quiet", "-c", CONSTRAINTS, "boto3")
    examples = readme_client_examples()
    assert examples
    for index, example in enumerate(examples):
        script = tmp_path / f"client_example_{index}.py"
        script.write_text(example, encoding="utf-8")
        run([python, script], cwd=tmp_path, env=stack_env, timeout=180)
    print(f"client test done in {time.monotonic() - started:.1f} s")


def free_port_block(count: int = 4) -> int:
    """A port whose next ``count - 1`` ports are free too (tidings up takes four)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            holders = []
            for port in range(base, base + count):
                holder = socket.socket()
                holders.append(holder)
                holder.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for holder in holders:
                holder.close()
        return base
    raise AssertionError("no block of free ports")


def copy_lines(stream: Iterable[str], sink: Callable[[str], object]) -> None:
    for line in stream:
        sink(line)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables `source .tidings/local.env` exports."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line)
        if words and words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def start_up(tidings: Path, folder: Path) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    """``tidings up`` on free ports, started in ``folder``; returns once it says it is up.

    Another test may take a port between the probe and the bind: then it says so in one
    line and exits, and this tries another block of ports."""
    for _ in range(3):
        process = subprocess.Popen(
            [str(tidings), "up", "--port", str(free_port_block())],
            cwd=folder,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a SIGINT from the terminal running pytest is not for it
        )
        lines: queue.Queue[str] = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=copy_lines, args=(process.stdout, lines.put), daemon=True).start()
        threading.Thread(
            target=copy_lines, args=(process.stderr, errors.append), daemon=True
        ).start()
        output: list[str] = []
        deadline = time.monotonic() + 240
        while not any("Ctrl-C to stop." in line for line in output):
            if process.poll() is not None:
                break
            if time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=30)
                raise AssertionError("".join(output) + "".join(errors))
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=1))
        else:
            return process, output, errors
        process.wait(timeout=30)
        time.sleep(0.5)  # the reader threads take the last lines
        if "already in use" not in "".join(errors):
            raise AssertionError("".join(output) + "".join(errors))
    raise AssertionError("no block of four free ports for tidings up")


PACKAGE_DIGEST = "from infra.deploy import ROOT, build_package; print(build_package().sha256, ROOT)"


def test_tidings_local_installs_from_the_wheel_and_runs_up_from_an_empty_folder(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    import psutil
    import requests

    started = time.monotonic()
    venv = fresh_venv(tmp_path / "tidings-venv")
    pip(
        venv,
        "install",
        "--quiet",
        "--no-compile",  # bytecode is not what this checks, and compiling moto takes long
        "-c",
        CONSTRAINTS,
        wheels["client"],  # not on PyPI: the wheel built beside it satisfies tidings' requirement
        f"{wheels['tidings']}[local]",
    )
    print(f"tidings[local] installed in {time.monotonic() - started:.1f} s")
    names = installed(venv)
    assert {"tidings", "tidings-client", "moto", "boto3"} <= names
    site = next((venv / "lib").glob("python3*/site-packages"))
    for data in (
        "template.yaml",
        "openapi.yaml",
        "routes.yaml",
        "lambda-requirements.txt",
        "py.typed",
    ):
        assert (site / "infra" / data).is_file(), data

    tidings = venv / "bin" / "tidings"
    empty = tmp_path / "empty"
    empty.mkdir()
    # tidings deploy's Lambda package, built from the installed files: the checkout's bytes
    from infra.deploy import build_package

    installed_package = run(
        [venv / "bin" / "python", "-c", PACKAGE_DIGEST], cwd=empty, env=clean_env()
    )
    assert installed_package.split() == [build_package().sha256, str(site)]
    version = run([tidings, "--version"], cwd=empty, env=clean_env())
    assert version.strip() == "tidings 1.0.0"

    process, output, errors = start_up(tidings, empty)
    try:
        print(f"tidings up ready {time.monotonic() - started:.1f} s after the install began")
        env_file = empty.resolve() / ".tidings" / "local.env"  # the default --state-dir
        assert any(line.endswith(f" source {env_file}\n") for line in output), output
        local = read_env_file(env_file)
        children = psutil.Process(process.pid).children(recursive=True)
        assert children  # moto and the function workers

        # one endpoint: a user added with the installed CLI signs in through the API
        run(
            [tidings, "users", "add", "ann", "--password", "ann-secret-2026", "--tenant", "acme"],
            cwd=empty,
            env=clean_env(**local),
            timeout=120,
        )
        answer = requests.post(
            f"{local['TIDINGS_API_URL']}/v1/login",
            json={"method": "password", "username": "ann", "password": "ann-secret-2026"},
            verify=local["TIDINGS_CA_FILE"],
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        identity = answer.json()["identityId"]
        assert answer.json()["channels"][:2] == [f"users/{identity}/todos", "tenants/acme/board"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
            raise
    assert status == 0, "".join(errors)[-3000:]
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive
    print(f"tidings test done in {time.monotonic() - started:.1f} s")
