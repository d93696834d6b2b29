"""The Tidings Greengrass v2 component (``client_sdk/greengrass/``) on a local core device.

The core device is made with ``tidings devices add``; :class:`LocalCore` plays its nucleus
(MQTT over mutual TLS to the gateway as the core's thing, IPC on a Unix socket, the token
exchange service backed by the AWS IoT credentials provider) and runs the recipe's ``Run``
step unchanged, as a process with the nucleus's variables. The component is the real
artifact: the Tidings client with the Greengrass transport (awsiotsdk's IPC client), writing
each change to its journal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra.local.greengrass.core import ComponentRecipe, LocalCore
from infra.local.greengrass.token_exchange import CoreCertificate
from infra.local.stack.local_stack import LocalStack
from tests.support.devices import devices_command

pytestmark = pytest.mark.timeout(420)

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "client_sdk" / "greengrass" / "recipe.yaml"


@pytest.fixture(scope="module")
def cores(shared_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The module's core devices (unique names: one connection per thing at a time)."""
    out = tmp_path_factory.mktemp("gg-cores")
    suffix = uuid.uuid4().hex[:6]
    found = {}
    for role in ("main", "refused", "cli"):
        name = f"gg-{role}-{suffix}"
        added = devices_command(shared_stack, "add", name, "--out", str(out))
        assert added.returncode == 0, added.stderr
        found[role] = out / f"{name}.json"
    return found


def local_core(
    stack: LocalStack, device_file: Path, work_dir: Path, recipe: ComponentRecipe | None = None
) -> LocalCore:
    info = json.loads(device_file.read_text())
    name, folder = info["thingName"], device_file.parent
    return LocalCore(
        core=CoreCertificate(
            thing_name=name,
            cert_file=folder / f"{name}.cert.pem",
            key_file=folder / f"{name}.private.key",
            ca_file=folder / "root-ca.pem",
        ),
        recipe=recipe or ComponentRecipe.load(RECIPE),
        mqtt_host="127.0.0.1",
        mqtt_port=int(info["mqttPort"]),
        credentials_url=(
            f"https://{info['credentialsEndpoint']}/role-aliases/{info['roleAlias']}/credentials"
        ),
        region=info["region"],
        work_dir=work_dir,
        overrides={
            "apiUrl": stack.api_url,
            "topicPrefix": info["topicPrefix"],
            "verifyIntervalSeconds": "1",
        },
        environment={"TIDINGS_CA_FILE": stack.ca_file},
    )


def write_settings(stack: LocalStack, thing: str, values: range, pause_s: float = 0.0) -> None:
    dynamodb = stack.client("dynamodb")
    for n in values:
        dynamodb.put_item(
            TableName=stack.tables["DeviceSettingsTable"],
            Item={"thing": {"S": thing}, "setting": {"S": f"s{n % 7}"}, "value": {"N": str(n)}},
        )
        if pause_s:
            time.sleep(pause_s)


def journal(core: LocalCore) -> list[dict[str, Any]]:
    path = core.component_work / "changes.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_journal(core: LocalCore, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    entries = journal(core)
    while len(entries) < count and time.monotonic() < deadline:
        process = core.component
        assert process is None or process.poll() is None, core.log_file.read_text()[-3000:]
        time.sleep(0.2)
        entries = journal(core)
    return entries


def test_505_changes_once_and_in_order_through_cuts_and_a_restart(
    shared_stack: LocalStack, cores: dict[str, Path], tmp_path: Path
) -> None:
    core = local_core(shared_stack, cores["main"], tmp_path)
    thing = core.core.thing_name
    with core:
        core.start_component()
        write_settings(shared_stack, thing, range(5))
        assert len(wait_journal(core, 5, 60)) == 5  # read from the start through the API
        writer = threading.Thread(
            target=write_settings,
            args=(shared_stack, thing, range(5, 500)),
            kwargs={"pause_s": 0.01},
        )
        writer.start()
        assert len(wait_journal(core, 150, 120)) >= 150
        # the nucleus's own connection is cut: the component's IPC streams stay up, silent
        dropped = shared_stack.run_on_gateway(shared_stack.gateway.drop_clients, thing)
        assert dropped == 1
        assert len(wait_journal(core, 300, 120)) >= 300
        # the component crashes and the nucleus starts it again: it resumes from its journal
        assert core.stop_component(kill=True) == -signal.SIGKILL
        restarted_at = len(journal(core))
        core.start_component()
        writer.join()
        assert len(wait_journal(core, 500, 180)) >= 500
        # the core goes offline, changes are published meanwhile, it comes back: no push
        # brings them (nothing follows them), the client's periodic read does
        core.bridge.stop()
        write_settings(shared_stack, thing, range(500, 505))
        time.sleep(2.0)  # published to nobody
        core.bridge.start()
        wait_journal(core, 505, 60)
        time.sleep(2.0)  # a late duplicate would show up now
        entries = journal(core)
        assert core.stop_component() == 0  # SIGTERM, as from the nucleus: a clean stop
    assert all("change" in entry for entry in entries), [e for e in entries if "change" not in e]
    seqs = [entry["change"]["seq"] for entry in entries]
    values = [int(entry["change"]["new"]["value"]) for entry in entries]
    assert seqs == list(range(1, 506)), (len(seqs), restarted_at)
    assert values == list(range(505))
    assert {entry["subscription"] for entry in entries} == {"things/me/settings"}
    assert {entry["change"]["channel"] for entry in entries} == {f"things/{thing}/settings"}
    assert core.token_exchange.fetches >= 1  # catch-up was signed with the core's role
    log = core.log_file.read_text(encoding="utf-8")
    assert "following things/me/settings after 0" in log
    assert re.search(r"following things/me/settings after [1-9]\d*", log), log[-2000:]


def test_a_topic_outside_the_recipes_access_control_is_refused_by_the_nucleus(
    shared_stack: LocalStack, cores: dict[str, Path], tmp_path: Path
) -> None:
    recipe = ComponentRecipe.load(RECIPE)
    narrow = json.loads(json.dumps(recipe.default_configuration))
    policy = narrow["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    for entry in policy.values():
        entry["resources"] = ["tidings/+/things/{iot:thingName}/only-this"]
    core = local_core(
        shared_stack,
        cores["refused"],
        tmp_path,
        replace(recipe, default_configuration=narrow),
    )
    with core:
        process = core.start_component()
        assert process.wait(90) == 1
    log = core.log_file.read_text(encoding="utf-8")
    assert "AccessDenied" in log and "refused SubscribeToIoTCore" in log, log[-2000:]
    assert "aws.greengrass.ipc.mqttproxy access control" in log


ARGS = ("--api-url", "https://127.0.0.1:9/v1", "--channels", "things/me/settings")


def test_a_component_the_nucleus_does_not_know_is_refused_and_exits(
    shared_stack: LocalStack, cores: dict[str, Path], tmp_path: Path
) -> None:
    core = local_core(shared_stack, cores["refused"], tmp_path)
    core.environment = {**core.environment, "SVCUID": "not-the-components-token"}
    with core:
        process = core.start_component()
        assert process.wait(90) == 1
    log = core.log_file.read_text(encoding="utf-8")
    assert "AccessDenied" in log and "Greengrass IPC" in log, log[-2000:]


def test_the_component_refuses_to_start_outside_a_nucleus(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SVCUID"))}
    done = subprocess.run(
        [sys.executable, "-m", "client_sdk.greengrass.component", *ARGS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "not started by a Greengrass nucleus" in done.stderr
    assert "SVCUID" in done.stderr and "AWS_CONTAINER_CREDENTIALS_FULL_URI" in done.stderr


def readme_greengrass_commands() -> list[str]:
    """The README's sh block that runs the component locally, line by line."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S) if "greengrass run" in b]
    assert len(blocks) == 1, blocks
    return [line.split("  #")[0].strip() for line in blocks[0].splitlines() if line.strip()]


@pytest.fixture
def readme_folder(shared_stack: LocalStack, tmp_path: Path) -> Iterator[Path]:
    (tmp_path / ".tidings").symlink_to(shared_stack.config.state_dir)  # `tidings up` was here
    (tmp_path / "client_sdk").symlink_to(ROOT / "client_sdk")  # the repository's folder
    yield tmp_path


def test_readme_greengrass_commands_run(shared_stack: LocalStack, readme_folder: Path) -> None:
    add, run = readme_greengrass_commands()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    assert add.startswith(".venv/bin/tidings devices add "), add
    assert run.startswith(".venv/bin/tidings greengrass run "), run
    added = subprocess.run(
        [sys.executable, "-m", "infra.cli", *add.split()[1:]],
        cwd=readme_folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    thing = add.split()[3]
    write_settings(shared_stack, thing, range(3))
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", *run.split()[1:]],
        cwd=readme_folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    path = readme_folder / ".tidings/greengrass/work/com.tidings.Channels/changes.jsonl"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if path.exists() and len(path.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, (out, err)
    assert f"runs on core {thing}" in out
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["change"]["seq"] for e in entries] == [1, 2, 3]
    # the component's work folder lives in the stack's state folder: clean up the thing
    removed = devices_command(shared_stack, "remove", thing)
    assert removed.returncode == 0, removed.stderr
