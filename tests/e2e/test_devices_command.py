"""``tidings devices add|list|deactivate|remove`` against a running local stack.

The command runs as the operator runs it (a process of its own, ``python -m infra.cli``),
finding the stack through its settings file (``STATE_DIR/local.env``). What ``add`` writes is
checked as a device would use it: the certificate chains to the stack's device CA, the key is
the certificate's, ``root-ca.pem`` is the CA that signs the stack's servers, the JSON names
the thing, certificate and endpoints; the IoT control plane is checked with boto3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.devices_command import ROLE_ALIAS, THING_POLICY, run_devices
from infra.local.awsauth.devices import certificate_id
from tests.support.moto_server import free_port

ROOT = Path(__file__).resolve().parents[2]
POLICY_DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
}


def tidings(state_dir: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "devices", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},  # nothing from this shell
    )


def template_has(stack: Any, logical: tuple[str, str]) -> bool:
    resources = stack.template.body.get("Resources") or {}
    return (resources.get(logical[0]) or {}).get("Type") == logical[1]


@pytest.fixture(scope="module")
def policy_args(shared_stack: Any) -> list[str]:
    """``--policy-name P`` with a policy made for these tests, unless the template has one."""
    if template_has(shared_stack, THING_POLICY):
        return []
    name = f"devices-test-{uuid.uuid4().hex[:8]}"
    shared_stack.client("iot").create_policy(
        policyName=name, policyDocument=json.dumps(POLICY_DOCUMENT)
    )
    return ["--policy-name", name]


def listed(shared_stack: Any) -> dict[str, list[tuple[str, str]]]:
    answer = tidings(shared_stack.config.state_dir, "list")
    assert answer.returncode == 0, answer.stderr
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in answer.stdout.splitlines():
        name, cert_id, status = line.split("\t")
        rows.setdefault(name, []).append((cert_id, status))
    return rows


def test_add_list_deactivate_remove(
    shared_stack: Any, policy_args: list[str], tmp_path: Path
) -> None:
    state_dir = shared_stack.config.state_dir
    name = f"sensor-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "device"
    added = tidings(state_dir, "add", name, "--out", str(out), *policy_args)
    assert added.returncode == 0, added.stderr
    assert f"added {name}" in added.stdout

    # the files a device needs
    pem = (out / f"{name}.cert.pem").read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    device_ca = x509.load_pem_x509_certificate(shared_stack.device_ca.cert_file.read_bytes())
    certificate.verify_directly_issued_by(device_ca)  # chains to the stack's device CA
    key_file = out / f"{name}.private.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key: Any = serialization.load_pem_private_key(key_file.read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, spki
    ) == certificate.public_key().public_bytes(serialization.Encoding.PEM, spki)
    assert (out / "root-ca.pem").read_bytes() == Path(shared_stack.ca_file).read_bytes()
    described = json.loads((out / f"{name}.json").read_text())
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert described["thingName"] == name
    assert described["certificateId"] == certificate_id(der)
    assert described["certificateArn"].endswith(f":cert/{certificate_id(der)}")
    assert described["endpoint"] == "localhost"
    assert described["wssPort"] == shared_stack.iot_port
    settings = shared_stack.settings()
    mqtt_port = settings.get("TIDINGS_MQTT_PORT")
    assert described["mqttPort"] == (int(mqtt_port) if mqtt_port else None)
    assert described["credentialsEndpoint"] == settings.get("TIDINGS_CREDENTIALS_ENDPOINT")
    if template_has(shared_stack, ROLE_ALIAS):
        assert described["roleAlias"] == shared_stack.outputs["DeviceRoleAliasName"]
    else:
        assert described["roleAlias"] is None

    # the IoT control plane holds what AWS would
    iot = shared_stack.client("iot")
    arn = described["certificateArn"]
    assert iot.list_principal_things(principal=arn)["things"] == [name]
    attached = [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]]
    assert attached == [described["policyName"]]
    if policy_args:
        assert attached == [policy_args[1]]
    else:  # the template's thing policy, found in the stack
        assert attached == [shared_stack.outputs["ThingPolicyName"]]

    assert listed(shared_stack)[name] == [(certificate_id(der), "ACTIVE")]

    again = tidings(state_dir, "add", name, "--out", str(tmp_path / "again"), *policy_args)
    assert again.returncode == 1
    assert f"a thing named '{name}' already exists" in again.stderr
    assert not (tmp_path / "again").exists()

    deactivated = tidings(state_dir, "deactivate", name)
    assert deactivated.returncode == 0, deactivated.stderr
    assert listed(shared_stack)[name] == [(certificate_id(der), "INACTIVE")]

    removed = tidings(state_dir, "remove", name)
    assert removed.returncode == 0, removed.stderr
    assert name not in listed(shared_stack)
    certificates = [c["certificateId"] for c in iot.list_certificates()["certificates"]]
    assert certificate_id(der) not in certificates

    for action in ("remove", "deactivate"):
        unknown = tidings(state_dir, action, name)
        assert unknown.returncode == 1
        assert f"there is no thing named '{name}'" in unknown.stderr


def test_add_without_a_thing_policy_names_the_option(
    shared_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stack whose template declares no thing policy (no stack found here): ``add`` asks
    for ``--policy-name`` and makes nothing."""

    class NoStacks:
        def describe_stacks(self) -> dict[str, Any]:
            return {"Stacks": []}

    name = f"nopolicy-{uuid.uuid4().hex[:8]}"
    args = argparse.Namespace(
        devices_command="add",
        name=name,
        policy_name=None,
        out=tmp_path,
        state_dir=shared_stack.config.state_dir,
    )
    assert run_devices(args, cloudformation=NoStacks()) == 1
    assert (
        "no ThingPolicy (AWS::IoT::Policy) resource nor ThingPolicyName output; "
        "pass --policy-name POLICY" in capsys.readouterr().err
    )
    assert name not in listed(shared_stack)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_policy_is_refused_before_anything_is_made(
    shared_stack: Any, tmp_path: Path
) -> None:
    name = f"badpolicy-{uuid.uuid4().hex[:8]}"
    answer = tidings(
        shared_stack.config.state_dir,
        "add",
        name,
        "--policy-name",
        "no-such",
        "--out",
        str(tmp_path),
    )
    assert answer.returncode == 1
    assert "there is no IoT policy named 'no-such'" in answer.stderr
    assert name not in listed(shared_stack)


def test_no_stack_and_a_stopped_stack_are_clear_errors(tmp_path: Path) -> None:
    answer = tidings(tmp_path, "list")
    assert answer.returncode == 1
    assert f"no local stack: {tmp_path / 'local.env'} does not exist" in answer.stderr

    port = free_port()
    (tmp_path / "local.env").write_text(
        f"export AWS_ENDPOINT_URL_IOT='http://127.0.0.1:{port}'\n"
        "export AWS_ENDPOINT_URL_CLOUDFORMATION='http://127.0.0.1:1'\n"
        "export AWS_ACCESS_KEY_ID='AKIAEXAMPLE'\nexport AWS_SECRET_ACCESS_KEY='secret'\n"
    )
    answer = tidings(tmp_path, "list")
    assert answer.returncode == 1
    assert "is not running (nothing answers at" in answer.stderr
    assert "start it with tidings up" in answer.stderr
