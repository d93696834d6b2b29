"""CORS on the local API gateway, from the template: the OPTIONS methods' MOCK answers (no
function, no signature) and the CORS origin on the gateway's own refusals (``DEFAULT_4XX``,
``DEFAULT_5XX``, ``INTEGRATION_FAILURE``), all resolved with the ``AllowedOrigins`` parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local.apigateway.service import ApiGateway, ApiRoute, Throttle
from infra.local.awsauth.credential_store import CredentialStore
from infra.local.net.certs import ensure_tls_files
from infra.local.stack.template_model import Resolver, Template, TemplateError, load_template
from tests.support.local_stack import TEMPLATE

ORIGIN = "https://app.example"
REQUIRED_HEADERS = {
    "authorization",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
}
TEMPLATE_MODEL = load_template(TEMPLATE)


def resolver(origin: str = ORIGIN) -> Resolver:
    parameters = {**TEMPLATE_MODEL.parameter_defaults(), "AllowedOrigins": origin}
    return Resolver(parameters, {}, {}, {})


def echo(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"X-Method": event["httpMethod"]}, "body": "{}"}


def routes(resolve: Resolver, *, skip: str = "") -> list[ApiRoute]:
    """The template's methods: MOCK ones as they are, proxied ones to ``echo``."""
    out = []
    for method in TEMPLATE_MODEL.api_methods(resolve):
        if method.logical_id == skip:
            continue
        if method.mock is not None:
            out.append(
                ApiRoute(
                    method.http_method, method.resource_path, method.authorization, mock=method.mock
                )
            )
        else:
            out.append(
                ApiRoute(method.http_method, method.resource_path, method.authorization, echo)
            )
    return out


@pytest.fixture(scope="module")
def ca(state_dir: Path) -> Path:
    return ensure_tls_files(state_dir, "us-east-1").ca_file


def running(state_dir: Path, *, templated_errors: bool = True, **kwargs: Any) -> ApiGateway:
    tls = ensure_tls_files(state_dir, "us-east-1")
    resolve = resolver()
    gateway = ApiGateway(
        kwargs.pop("routes", None) or routes(resolve),
        CredentialStore(),
        tls.server_context(),
        gateway_responses=TEMPLATE_MODEL.gateway_responses(resolve) if templated_errors else None,
        **kwargs,
    )
    return gateway  # started by ``with``


@pytest.fixture(scope="module")
def gateway(state_dir: Path) -> Iterator[ApiGateway]:
    with running(state_dir) as started:
        yield started


def preflight(url: str, ca: Path, method: str) -> requests.Response:
    return requests.options(
        url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(sorted(REQUIRED_HEADERS)),
        },
        verify=str(ca),
        timeout=20,
    )


@pytest.mark.parametrize(
    ("path", "method"), [("/v1/login", "POST"), ("/v1/channels/users/us-east-1:a/todos", "GET")]
)
def test_a_preflight_gets_the_mock_answer_without_a_signature(
    gateway: ApiGateway, ca: Path, path: str, method: str
) -> None:
    answer = preflight(gateway.url + path, ca, method)
    assert answer.status_code == 200, answer.text
    assert "X-Method" not in answer.headers  # no function ran
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers["Access-Control-Allow-Methods"].split(",") == [method, "OPTIONS"]
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= REQUIRED_HEADERS
    assert int(answer.headers["Access-Control-Max-Age"]) >= 600
    assert answer.content == b""


def test_the_template_allows_any_origin_by_default() -> None:
    mocks = [m.mock for m in TEMPLATE_MODEL.api_methods() if m.mock is not None]
    assert len(mocks) == 2
    assert {m.headers["Access-Control-Allow-Origin"] for m in mocks} == {"*"}
    for response in TEMPLATE_MODEL.gateway_responses().values():
        assert response.headers["Access-Control-Allow-Origin"] == "*", response.response_type


def test_every_resource_with_methods_has_a_preflight() -> None:
    methods = TEMPLATE_MODEL.api_methods()
    with_methods = {m.resource_path for m in methods if m.http_method != "OPTIONS"}
    preflights = {m.resource_path for m in methods if m.http_method == "OPTIONS"}
    assert with_methods == preflights
    assert all(m.authorization == "NONE" for m in methods if m.http_method == "OPTIONS")


def test_the_gateways_refusals_carry_the_origin(gateway: ApiGateway, ca: Path) -> None:
    unsigned = requests.get(f"{gateway.url}/v1/channels/public/scores", verify=str(ca), timeout=20)
    assert unsigned.status_code == 403
    assert unsigned.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(unsigned.json()) == {"error", "message"}
    unknown = requests.get(f"{gateway.url}/v1/nowhere", verify=str(ca), timeout=20)
    assert unknown.status_code == 404
    assert unknown.headers["Access-Control-Allow-Origin"] == ORIGIN
    # the proxied answer is the function's own; the gateway adds nothing to it
    login = requests.post(f"{gateway.url}/v1/login", verify=str(ca), timeout=20)
    assert login.status_code == 200 and login.headers["X-Method"] == "POST"
    assert "Access-Control-Allow-Origin" not in login.headers


def test_without_the_templates_gateway_responses_refusals_have_no_origin(
    state_dir: Path, ca: Path
) -> None:
    with running(state_dir, templated_errors=False) as bare:
        unsigned = requests.get(f"{bare.url}/v1/channels/public/scores", verify=str(ca), timeout=20)
    assert unsigned.status_code == 403
    assert "Access-Control-Allow-Origin" not in unsigned.headers


def test_options_on_a_resource_without_a_preflight_is_refused_like_any_missing_method(
    state_dir: Path, ca: Path
) -> None:
    only_login = routes(resolver(), skip="Api OPTIONS /v1/channels/{channel+}")
    with running(state_dir, routes=only_login) as gateway:
        answer = preflight(f"{gateway.url}/v1/channels/public/scores", ca, "GET")
        deleted = requests.delete(
            f"{gateway.url}/v1/channels/public/scores", verify=str(ca), timeout=20
        )
    assert answer.status_code == deleted.status_code == 405
    assert answer.headers["x-amzn-ErrorType"] == deleted.headers["x-amzn-ErrorType"]
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN  # DEFAULT_4XX


def test_stage_throttling_answers_429_with_the_origin(state_dir: Path, ca: Path) -> None:
    with running(state_dir, throttle=Throttle(0.001, 1)) as gateway:
        first = preflight(f"{gateway.url}/v1/login", ca, "POST")
        second = preflight(f"{gateway.url}/v1/login", ca, "POST")
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert second.headers["Access-Control-Allow-Origin"] == ORIGIN


def _mock_method(response_parameters: dict[str, Any], declared: list[str]) -> Template:
    return Template(
        {
            "Resources": {
                "M": {
                    "Type": "AWS::ApiGateway::Method",
                    "Properties": {
                        "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                        "HttpMethod": "OPTIONS",
                        "AuthorizationType": "NONE",
                        "Integration": {
                            "Type": "MOCK",
                            "IntegrationResponses": [
                                {"StatusCode": "200", "ResponseParameters": response_parameters}
                            ],
                        },
                        "MethodResponses": [
                            {
                                "StatusCode": "200",
                                "ResponseParameters": {
                                    f"method.response.header.{name}": True for name in declared
                                },
                            }
                        ],
                    },
                }
            }
        }
    )


def test_a_mock_header_its_method_response_does_not_declare_is_refused() -> None:
    header = {"method.response.header.Access-Control-Allow-Origin": "'*'"}
    (method,) = _mock_method(header, ["Access-Control-Allow-Origin"]).api_methods()
    assert method.mock is not None and method.mock.headers == {"Access-Control-Allow-Origin": "*"}
    with pytest.raises(TemplateError, match="does not declare: Access-Control-Allow-Origin"):
        _mock_method(header, []).api_methods()


def test_a_dynamic_mock_header_is_refused_locally() -> None:
    dynamic = {"method.response.header.X": "method.request.header.Origin"}
    with pytest.raises(TemplateError, match="static header values"):
        _mock_method(dynamic, ["X"]).api_methods()
