"""The HTTP API with a client that shares no code with Tidings: curl, and libcurl's own SigV4
(``--aws-sigv4``), through the sequence the README's "Mobile apps and any HTTP client"
section gives: ``POST /v1/login``, Cognito ``GetCredentialsForIdentity``, then signed reads
after a cursor, long-polling for what comes next. Also what the section says the errors
mean: 410 for a cursor the log does not have, 403 for a channel that is not the caller's.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, ensure_user
from tests.support.openapi import api_document

PASSWORD = "curl-sequence-password-1"
CURL = ("curl", "-sS", "--cacert")


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    add_user(shared_stack, "curly", PASSWORD, {"curl-acme"})
    return shared_stack


def curl(stack: LocalStack, *args: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    """Run curl; (HTTP status, JSON body). An answer of the API is checked against
    infra/openapi.yaml (status, headers, body)."""
    with tempfile.NamedTemporaryFile("r", suffix=".headers") as header_file:
        done = subprocess.run(
            [*CURL, stack.ca_file, "-D", header_file.name, "-w", "\n%{http_code}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        raw_headers = header_file.read()
    body, _, status = done.stdout.rpartition("\n")
    url = args[-1]
    if url.startswith(stack.api_url):
        headers = dict(
            line.split(":", 1) for line in raw_headers.strip().splitlines()[1:] if ":" in line
        )
        api_document().check(
            method,
            urlsplit(url).path.removeprefix(urlsplit(stack.api_url).path),
            int(status),
            {k.strip(): v.strip() for k, v in headers.items()},
            body.encode(),
        )
    return int(status), json.loads(body) if body else {}


def signed(stack: LocalStack, credentials: dict[str, Any], region: str, url: str):
    return curl(
        stack,
        "--aws-sigv4",
        f"aws:amz:{region}:execute-api",
        "--user",
        f"{credentials['AccessKeyId']}:{credentials['SecretKey']}",
        "-H",
        f"x-amz-security-token: {credentials['SessionToken']}",
        url,
    )


def login_as(stack: LocalStack, user: str, password: str) -> dict[str, Any]:
    """Step 1: ``POST /v1/login``."""
    status, login = curl(
        stack,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"method": "password", "username": user, "password": password}),
        f"{stack.api_url}/v1/login",
        method="POST",
    )
    assert status == 200, login
    return login


def sign_in_as(stack: LocalStack, user: str, password: str) -> str:
    """The identity id of ``user``."""
    return str(login_as(stack, user, password)["identityId"])


def sign_in(stack: LocalStack) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps 1 and 2: the login answer and the identity's AWS credentials."""
    login = login_as(stack, "curly", PASSWORD)
    status, answer = curl(
        stack,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-amz-json-1.1",
        "-H",
        "X-Amz-Target: AWSCognitoIdentityService.GetCredentialsForIdentity",
        "-d",
        json.dumps(
            {
                "IdentityId": login["identityId"],
                "Logins": {"cognito-identity.amazonaws.com": login["token"]},
            }
        ),
        stack.identity_url,
    )
    assert status == 200, answer
    return login, answer["Credentials"]


def write_scores(stack: LocalStack, start: int, count: int) -> None:
    dynamodb = stack.client("dynamodb")
    for n in range(start, start + count):
        dynamodb.put_item(
            TableName=stack.tables["ScoresTable"],
            Item={"game": {"S": "curl"}, "player": {"S": f"p{n}"}, "score": {"N": str(n)}},
        )


def test_the_whole_sequence_with_curl(stack: LocalStack) -> None:
    login, credentials = sign_in(stack)
    region, api = login["region"], stack.api_url
    # 3. the channel's head: where to start (store it, with the identity id)
    status, head = signed(stack, credentials, region, f"{api}/v1/channels/public/scores")
    assert status == 200 and head["channel"] == "public/scores"
    cursor = head["head"]
    write_scores(stack, 0, 30)
    # 4. read after the cursor, in order, page by page, long-polling when there is nothing
    seen: list[int] = []
    deadline = time.monotonic() + 90
    while len(seen) < 30 and time.monotonic() < deadline:
        status, page = signed(
            stack,
            credentials,
            region,
            f"{api}/v1/channels/public/scores/changes?after={cursor}&limit=7&wait=5",
        )
        assert status == 200, page
        for change in page["changes"]:
            assert change["seq"] == cursor + 1  # contiguous: nothing skipped, nothing twice
            cursor = change["seq"]
            seen.append(int(change["new"]["score"]))
    assert seen == list(range(30))
    # a long-poll after the head waits, and answers as soon as a change arrives
    later = threading.Timer(1.5, write_scores, args=(stack, 30, 1))
    later.start()
    started = time.monotonic()
    status, page = signed(
        stack,
        credentials,
        region,
        f"{api}/v1/channels/public/scores/changes?after={cursor}&wait=15",
    )
    later.join()
    assert status == 200 and [c["seq"] for c in page["changes"]] == [cursor + 1]
    assert time.monotonic() - started < 14  # answered by the change, not by the wait's end


def test_a_cursor_the_log_does_not_have_is_410_with_where_to_reload(stack: LocalStack) -> None:
    login, credentials = sign_in(stack)
    url = f"{stack.api_url}/v1/channels/public/scores/changes?after=1000000000"
    status, body = signed(stack, credentials, login["region"], url)
    assert status == 410 and body["error"] == "cursor_expired"
    assert isinstance(body["head"], int) and isinstance(body["epoch"], int) and body["message"]


def test_another_tenants_channel_is_403_and_bad_signatures_are_refused(
    stack: LocalStack,
) -> None:
    login, credentials = sign_in(stack)
    region, api = login["region"], stack.api_url
    status, body = signed(stack, credentials, region, f"{api}/v1/channels/tenants/curl-acme/board")
    assert status == 200, body  # its own tenant
    status, body = signed(stack, credentials, region, f"{api}/v1/channels/tenants/globex/board")
    assert status == 403, body
    secret = credentials["SecretKey"]
    wrong = {**credentials, "SecretKey": secret[:-1] + ("x" if secret[-1] != "x" else "y")}
    status, body = signed(stack, wrong, region, f"{api}/v1/channels/public/scores")
    assert status == 403 and "signature" in json.dumps(body).lower(), body


def test_me_reads_the_callers_own_channel_where_the_identity_path_cannot_be_signed(
    stack: LocalStack,
) -> None:
    login, credentials = sign_in(stack)
    region, api, identity = login["region"], stack.api_url, login["identityId"]
    dynamodb = stack.client("dynamodb")
    for n in range(3):
        dynamodb.put_item(
            TableName=stack.tables["TodosTable"],
            Item={"owner": {"S": identity}, "id": {"S": f"curl{n}"}, "n": {"N": str(n)}},
        )
    status, head = signed(stack, credentials, region, f"{api}/v1/channels/users/me/todos")
    assert status == 200 and head["channel"] == f"users/{identity}/todos"  # resolved
    changes: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(changes) < 3 and time.monotonic() < deadline:
        after = changes[-1]["seq"] if changes else 0
        url = f"{api}/v1/channels/users/me/todos/changes?after={after}&wait=5"
        status, page = signed(stack, credentials, region, url)
        assert status == 200, page
        changes.extend(page["changes"])
    assert [c["seq"] for c in changes] == [1, 2, 3]
    assert {c["channel"] for c in changes} == {f"users/{identity}/todos"}
    # the same channel by its identity id: curl signs the ':' as it is, AWS (and the local
    # API) sign it percent-encoded, so the signatures differ and the request is refused
    assert ":" in identity
    url = f"{api}/v1/channels/users/{identity}/todos"
    status, body = signed(stack, credentials, region, url)
    assert status == 403 and "signature" in json.dumps(body).lower(), body


def test_the_readme_sequence_runs_as_written(stack: LocalStack, tmp_path) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Mobile apps and any HTTP client") :]
    start = section.index("```sh\n") + len("```sh\n")
    script = section[start : section.index("```", start)]
    ensure_user(stack, "ann", "ann-secret-2026", {"acme"})  # the README's user
    (tmp_path / ".tidings").symlink_to(stack.config.state_dir)  # `tidings up` was here
    identity = sign_in_as(stack, "ann", "ann-secret-2026")
    stack.client("dynamodb").put_item(
        TableName=stack.tables["TodosTable"],
        Item={"owner": {"S": identity}, "id": {"S": "readme"}, "title": {"S": "from curl"}},
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + '\necho "cursor=$cursor"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "from curl" in done.stdout and f"users/{identity}/todos" in done.stdout
    assert re.search(r"^cursor=[1-9]\d*$", done.stdout, re.MULTILINE), done.stdout
