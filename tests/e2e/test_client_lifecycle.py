"""Connection lifecycle: renewal before the 24 h limit, the legacy AWSIoTPythonSDK transport
with the same guarantees, and `tidings up` refusing a busy port in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.e2e.test_client_guarantees import PASSWORD, connect, write_todos
from tests.support.local_stack import add_user
from tests.support.recorder import Recorder, assert_exactly_once_in_order

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    for user in ("renew", "legacy"):
        add_user(shared_stack, user, PASSWORD, set())
    return shared_stack


def test_connection_is_renewed_before_its_age_limit_without_gap(stack: LocalStack) -> None:
    recorder = Recorder()
    with connect(stack, "renew", max_connection_age_s=3.0) as client:
        client.subscribe("users/me/todos", recorder.on_change)
        write_todos(stack, client.identity_id, 100, pause_s=0.1)
        assert recorder.wait_for(100, 60)
        time.sleep(1.0)
        assert client.stats["renewals"] >= 2
        # one connection per client id: a renewal never takes over its predecessor
        ids = [
            c.client_id
            for c in stack.gateway.broker.connections
            if c.client_id.startswith(client.identity_id)
        ]
        assert len(ids) == len(set(ids)) and len(ids) <= 2
    assert_exactly_once_in_order(recorder, 100)


def test_legacy_v1_transport_keeps_the_guarantees(stack: LocalStack) -> None:
    recorder = Recorder()
    with connect(stack, "legacy", transport="v1") as client:
        assert client.state == "live"
        client.subscribe("users/me/todos", recorder.on_change)
        writer = threading.Thread(
            target=write_todos, args=(stack, client.identity_id, 150), kwargs={"pause_s": 0.02}
        )
        writer.start()
        for _ in range(2):
            time.sleep(1.0)
            stack.run_on_gateway(stack.gateway.drop_clients, client.identity_id)
        writer.join()
        assert recorder.wait_for(150, 90)
        time.sleep(1.0)
    assert_exactly_once_in_order(recorder, 150)


def test_up_refuses_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "infra.cli",
                "up",
                "--port",
                str(port - 3),
                "--state-dir",
                str(tmp_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0]
