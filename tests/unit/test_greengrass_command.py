"""``tidings greengrass run``'s refusals: each names what to fix, and nothing is started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli import main
from infra.local.awsauth.devices import DeviceCA
from tests.support.devices import issue_device

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "client_sdk" / "greengrass" / "recipe.yaml")


def device_file(folder: Path, **changes: object) -> Path:
    info = {
        "thingName": "core-1",
        "mqttPort": 8448,
        "roleAlias": "tidings-dev-device",
        "credentialsEndpoint": "localhost:8449",
        "region": "us-east-1",
        "topicPrefix": "tidings/dev/",
        **changes,
    }
    path = folder / "core-1.json"
    path.write_text(json.dumps(info))
    for name in ("core-1.cert.pem", "core-1.private.key", "root-ca.pem"):
        (folder / name).write_text("-")
    return path


def run(tmp_path: Path, *args: str) -> int:
    return main(["greengrass", "run", *args, "--state-dir", str(tmp_path / "no-stack")])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--core-device", "missing.json"], "make the core device with tidings devices add"),
        (["--core-device", "{device}", "--config", "channels"], "write KEY=VALUE"),
        (["--core-device", "{device}"], "no apiUrl"),
        (["--core-device", "{bad}"], "has no mqttPort, roleAlias"),
    ],
)
def test_refusals_name_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    good = device_file(tmp_path)
    (tmp_path / "bad").mkdir()
    bad = device_file(tmp_path / "bad", mqttPort=None, roleAlias="")
    args = [a.format(device=good, bad=bad) for a in args]
    if args[1] == "missing.json":
        args[1] = str(tmp_path / "missing.json")
    assert run(tmp_path, RECIPE, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("tidings greengrass: ") and message in err, err


def test_a_recipe_without_a_run_step_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("ComponentName: c\nManifests: []\n")
    device = device_file(tmp_path)
    assert run(tmp_path, str(recipe), "--core-device", str(device)) == 1
    assert "no Linux manifest with a Lifecycle Run step" in capsys.readouterr().err


def test_missing_certificate_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = device_file(tmp_path)
    (tmp_path / "core-1.private.key").unlink()
    args = ["--core-device", str(device), "--config", "apiUrl=https://x/v1"]
    assert run(tmp_path, RECIPE, *args) == 1
    assert "core-1.private.key" in capsys.readouterr().err


def test_an_unusable_certificate_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = device_file(tmp_path)  # its certificate and key are not PEM
    args = ["--core-device", str(device), "--config", "apiUrl=https://x/v1"]
    assert run(tmp_path, RECIPE, *args, "--work-dir", str(tmp_path / "gg")) == 1
    assert "certificate or key cannot be used" in capsys.readouterr().err


def test_a_stack_that_does_not_answer_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = device_file(tmp_path, mqttPort=1)  # nothing listens on port 1
    ca = DeviceCA.load_or_create(tmp_path / "ca")
    files = issue_device(ca, tmp_path / "issued", "core-1")
    (tmp_path / "core-1.cert.pem").write_bytes(files.cert_file.read_bytes())
    (tmp_path / "core-1.private.key").write_bytes(files.key_file.read_bytes())
    (tmp_path / "root-ca.pem").write_bytes(ca.cert_file.read_bytes())
    args = ["--core-device", str(device), "--config", "apiUrl=https://x/v1"]
    assert run(tmp_path, RECIPE, *args, "--work-dir", str(tmp_path / "gg")) == 1
    assert "cannot connect to the stack's MQTT port 1" in capsys.readouterr().err
