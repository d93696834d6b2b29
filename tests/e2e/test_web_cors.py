"""CORS decides in a real browser as on AWS: with ``AllowedOrigins`` set to one origin, a page
on another origin cannot read the HTTP API's answers (Chromium refuses them), while Cognito
Identity (any origin) and the local DynamoDB endpoint still answer it; the page on the allowed
origin signs in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.browser import chromium
from tests.support.local_stack import add_user, stack_config

ALLOWED = "http://localhost:{port}"  # the stack's web site by another name: another origin
PASSWORD = "cors-pass-2026"

FETCH = """async ({ url, init }) => {
  try {
    const answer = await fetch(url, init);
    return { status: answer.status, body: await answer.text() };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
}"""

LOGIN = {
    "method": "POST",
    "headers": {"Content-Type": "application/json"},
    "body": '{"method": "password", "username": "cors-user", "password": "cors-pass-2026"}',
}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    import socket

    with socket.socket() as probe:  # a free port for the site, known before the stack starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = stack_config(web_port=port, parameters={"AllowedOrigins": ALLOWED.format(port=port)})
    with LocalStack(config) as running:
        add_user(running, "cors-user", PASSWORD, {"acme"})
        yield running


def test_a_page_on_another_origin_cannot_read_the_api(stack: LocalStack) -> None:
    port = stack.web_url.rsplit(":", 1)[1].strip("/")
    with chromium(stack.ca_file) as browser:
        page = browser.new_page()
        page.goto(stack.web_url + "sandbox.html")  # http://127.0.0.1:<port>: not the allowed origin
        refused = page.evaluate(FETCH, {"url": stack.api_url + "/v1/login", "init": LOGIN})
        assert refused == {"error": "TypeError: Failed to fetch"}
        identity = page.evaluate(
            FETCH,
            {
                "url": stack.identity_url,
                "init": {
                    "method": "POST",
                    "headers": {
                        "Content-Type": "application/x-amz-json-1.1",
                        "X-Amz-Target": "AWSCognitoIdentityService.GetCredentialsForIdentity",
                    },
                    "body": '{"IdentityId": "us-east-1:00000000-0000-0000-0000-000000000000"}',
                },
            },
        )
        assert "error" not in identity and identity["status"] == 400  # answered, readable

        allowed = browser.new_page()
        allowed.goto(f"http://localhost:{port}/sandbox.html")  # the allowed origin
        answer = allowed.evaluate(FETCH, {"url": stack.api_url + "/v1/login", "init": LOGIN})
        assert answer.get("status") == 200, answer
        state = allowed.evaluate(
            """async ({ apiUrl, cognitoEndpoint }) => {
              const { Tidings } = await import("@tidings/client");
              const t = await Tidings.connect(apiUrl,
                { method: "password", username: "cors-user", password: "cors-pass-2026" },
                { cognitoEndpoint });
              const state = t.state;
              await t.close();
              return state;
            }""",
            {"apiUrl": stack.api_url, "cognitoEndpoint": stack.identity_url},
        )
        assert state == "live"
