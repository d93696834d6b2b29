"""The Greengrass component's pure parts: the sign-in value read from a nucleus's variables,
the journal that holds the cursors, the recipe as the local core reads it, and which service
a sign-in gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_sdk import ClientOptions, ContinuityLost, GreengrassCore, Password
from client_sdk._service import GreengrassService, aws_service
from client_sdk.greengrass import ChangeJournal
from infra.local.greengrass.core import ComponentRecipe, RecipeError

ROOT = Path(__file__).resolve().parents[2]
NUCLEUS = {
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/tmp/gg/ipc.socket",
    "SVCUID": "svcuid-secret",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:4567/2016-11-01/credentialprovider/",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token-secret",
    "AWS_IOT_THING_NAME": "kitchen-core",
    "AWS_REGION": "eu-west-1",
}


def change(seq: int, epoch: int = 1) -> dict:
    return {"v": 1, "channel": "things/k/settings", "seq": seq, "epoch": epoch, "new": {"n": seq}}


def test_the_core_is_read_from_the_nucleus_variables_and_hides_its_tokens() -> None:
    core = GreengrassCore.from_environment("tidings/prod/", NUCLEUS)
    assert (core.thing_name, core.region, core.topic_prefix) == (
        "kitchen-core",
        "eu-west-1",
        "tidings/prod/",
    )
    assert core.ipc_socket == "/tmp/gg/ipc.socket"
    assert "secret" not in repr(core) and "kitchen-core" in repr(core)


def test_aws_default_region_stands_in_for_aws_region() -> None:
    env = {k: v for k, v in NUCLEUS.items() if k != "AWS_REGION"}
    env["AWS_DEFAULT_REGION"] = "ap-south-1"
    assert GreengrassCore.from_environment(environ=env).region == "ap-south-1"


def test_missing_variables_are_named() -> None:
    env = {k: v for k, v in NUCLEUS.items() if not k.startswith("AWS_CONTAINER")}
    with pytest.raises(ValueError, match="not started by a Greengrass nucleus") as caught:
        GreengrassCore.from_environment(environ=env)
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in str(caught.value)
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in str(caught.value)
    assert "SVCUID" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("topic_prefix", "tidings/dev", "must end with '/'"),
        ("credentials_uri", "ftp://x/", "http\\(s\\) URL"),
        ("thing_name", "", "thing_name is empty"),
    ],
)
def test_bad_values_are_refused(field: str, value: str, message: str) -> None:
    fields = {
        "thing_name": "k",
        "region": "us-east-1",
        "ipc_socket": "/s",
        "svcuid": "t",
        "credentials_uri": "http://localhost/",
        "authorization_token": "a",
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        GreengrassCore(**fields)


def test_the_greengrass_transport_goes_with_the_greengrass_sign_in_only() -> None:
    core = GreengrassCore.from_environment(environ=NUCLEUS)
    assert isinstance(aws_service("https://api/v1", core, ClientOptions()), GreengrassService)
    greengrass = ClientOptions(transport="greengrass")
    assert isinstance(aws_service("https://api/v1", core, greengrass), GreengrassService)
    with pytest.raises(ValueError, match="not 'v1'"):
        aws_service("https://api/v1", core, ClientOptions(transport="v1"))
    with pytest.raises(ValueError, match=r"GreengrassCore\.from_environment"):
        aws_service("https://api/v1", Password("ann", "pw"), greengrass)


def test_the_journal_keeps_cursors_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "work" / "changes.jsonl"
    journal = ChangeJournal(path)
    assert journal.cursor("things/me/settings") is None
    for seq in (1, 2, 3):
        journal.apply("things/me/settings", change(seq))  # type: ignore[arg-type]
    journal.lost("public/scores", ContinuityLost(head=40, epoch=2, reason="cursor_expired"))
    journal.close()
    again = ChangeJournal(path)
    assert again.cursor("things/me/settings") == 3
    assert again.cursor("public/scores") == 40
    again.apply("things/me/settings", change(4))  # type: ignore[arg-type]
    again.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("change", {}).get("seq") for line in lines] == [1, 2, 3, None, 4]
    assert lines[3]["lost"] == {"head": 40, "epoch": 2, "reason": "cursor_expired"}


def test_a_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "changes.jsonl"
    journal = ChangeJournal(path)
    journal.apply("c", change(1))  # type: ignore[arg-type]
    journal.close()
    with open(path, "a", encoding="utf-8") as torn:
        torn.write('{"subscription":"c","change":{"seq":2')  # a crash mid-write
    again = ChangeJournal(path)
    assert again.cursor("c") == 1  # the torn change was never acknowledged: read again
    again.apply("c", change(2))  # type: ignore[arg-type]
    again.close()
    assert [json.loads(line)["change"]["seq"] for line in path.read_text().splitlines()] == [1, 2]


def test_a_broken_line_in_the_middle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "changes.jsonl"
    path.write_text('not json\n{"subscription":"c","change":{"seq":1,"epoch":1}}\n')
    with pytest.raises(ValueError, match="broken line at byte 0"):
        ChangeJournal(path)


def test_the_shipped_recipe_is_read_and_interpolated(tmp_path: Path) -> None:
    recipe = ComponentRecipe.load(ROOT / "client_sdk" / "greengrass" / "recipe.yaml")
    assert recipe.name == "com.tidings.Channels"
    configuration = recipe.configuration({"apiUrl": "https://x/v1", "channels": "a,b"})
    command = recipe.run_command(configuration, thing_name="core-1", work_path=tmp_path)
    assert "python3 -u -m client_sdk.greengrass.component" in command
    assert "--api-url https://x/v1 --channels a,b --topic-prefix tidings/dev/" in command
    access = recipe.access_control(configuration, "core-1")
    [policy] = access["aws.greengrass.ipc.mqttproxy"].values()
    assert policy["resources"] == ["tidings/+/things/core-1/#"]
    assert policy["operations"] == ["aws.greengrass#SubscribeToIoTCore"]


def test_configuration_values_are_shell_quoted(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "ComponentName: c\nComponentConfiguration:\n  DefaultConfiguration:\n"
        "    x: 'a b; rm -rf /'\n"
        "Manifests:\n  - Lifecycle:\n      Run: echo {configuration:/x} {iot:thingName} "
        "{artifacts:path} {work:path}\n"
    )
    recipe = ComponentRecipe.load(path)
    command = recipe.run_command(recipe.configuration({}), thing_name="t", work_path=tmp_path)
    assert command == f"echo 'a b; rm -rf /' t {tmp_path} {tmp_path}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "a YAML or JSON object was expected"),
        ("ComponentVersion: 1.0.0\n", "has no ComponentName"),
        ("ComponentName: c\nManifests: []\n", "no Linux manifest with a Lifecycle Run step"),
        (
            "ComponentName: c\nManifests:\n  - Platform: {os: windows}\n    Lifecycle: {Run: x}\n",
            "no Linux manifest",
        ),
        ("ComponentName: [unclosed\n", "cannot be read as a recipe"),
    ],
)
def test_recipes_the_core_cannot_run_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message):
        ComponentRecipe.load(path)


def test_unknown_recipe_variables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "ComponentName: c\nManifests:\n  - Lifecycle:\n      Run: run {configuration:/nope}\n"
    )
    recipe = ComponentRecipe.load(path)
    with pytest.raises(RecipeError, match="does not have"):
        recipe.run_command({}, thing_name="t", work_path=tmp_path)
    path.write_text(
        "ComponentName: c\nManifests:\n  - Lifecycle:\n      Run: run {kernel:rootPath}\n"
    )
    with pytest.raises(RecipeError, match="is unknown"):
        ComponentRecipe.load(path).run_command({}, thing_name="t", work_path=tmp_path)
