"""The moto process (``infra/local/motohost/process.py``): what it refuses and how it freezes.

It freezes its heap (``gc.freeze``) once, when the local stack says start-up is done
(``SIGUSR1``), after a collection, and never again: what is made later is collected as usual.
It refuses to serve with another moto than the one the fixes are written for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import boto3
import pytest
from botocore.config import Config

from infra.local.motohost.fixes import MOTO_VERSION
from tests.support.moto_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
PRETEND_ANOTHER_MOTO = (
    "import sys, infra.local.motohost.fixes as fixes; "
    "fixes._installed_moto_version = lambda: '5.3.0'; "
)


def read_line(stream: IO[str], timeout_s: float = 30.0) -> str | None:
    """The next line of ``stream``, or None if none comes within ``timeout_s``."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return lines[0].strip() if lines else None


def start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=ENV,
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture()
def moto() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = start(
        "import sys; from infra.local.motohost.process import main; sys.exit(main(['0']))"
    )
    try:
        assert process.stdout is not None
        line = read_line(process.stdout)
        assert line is not None and line.startswith("READY "), line
        yield process, f"http://127.0.0.1:{line.split()[1]}"
    finally:
        stop(process)


def frozen(process: subprocess.Popen[str]) -> int:
    """Ask the moto process to freeze (SIGUSR1); its answer: objects in the permanent generation."""
    assert process.stdout is not None
    process.send_signal(signal.SIGUSR1)
    line = read_line(process.stdout)
    assert line is not None and line.startswith("FROZEN "), line
    return int(line.split()[1])


def test_moto_freezes_its_heap_once_when_asked(moto: tuple[subprocess.Popen[str], str]) -> None:
    process, url = moto
    first = frozen(process)
    assert first > 10_000  # moto's models and the fixes' code, at least
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )
    dynamodb.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    for n in range(200):  # objects a second freeze would add to the permanent generation
        dynamodb.put_item(TableName="t", Item={"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})
    # objects leave the permanent generation only when freed: it never grew again
    assert frozen(process) <= first


def test_moto_refuses_another_moto_release_with_one_line() -> None:
    process = start(
        PRETEND_ANOTHER_MOTO
        + "from infra.local.motohost.process import main; sys.exit(main(['0']))"
    )
    try:
        assert process.stdout is not None
        line = read_line(process.stdout)
        assert process.wait(timeout=30) == 1
    finally:
        stop(process)
    assert line is not None and line.startswith("ERROR "), line
    assert f"moto {MOTO_VERSION}" in line and "moto 5.3.0 is installed" in line


def test_tidings_up_refuses_another_moto_release_with_one_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRETEND_ANOTHER_MOTO + "from infra.cli import main; "
            f"sys.exit(main(['up', '--state-dir', {str(tmp_path)!r}, '--port', '{free_port()}']))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    try:
        out, err = process.communicate(timeout=60)  # it would serve for ever if it started
    finally:
        stop(process)
    assert process.returncode == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("tidings: ") and f"moto {MOTO_VERSION}" in line
    assert "moto 5.3.0 is installed" in line


def test_the_owner_freezes_its_own_heap_once() -> None:
    """``tidings up`` calls ``freeze_process_heap`` after the start; a second call does nothing."""
    code = (
        "import gc; from infra.local.stack.local_stack import freeze_process_heap; "
        "before = gc.get_freeze_count(); freeze_process_heap(); first = gc.get_freeze_count(); "
        "kept = [[n] for n in range(10000)]; freeze_process_heap(); "
        "print(before, first, gc.get_freeze_count())"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=60
    )
    before, first, second = map(int, answer.stdout.split())
    assert before == 0 and first > 0
    assert second <= first  # the 10,000 new lists were not frozen
