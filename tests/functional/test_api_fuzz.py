"""Schemathesis fuzzes the running local API from infra/openapi.yaml: every operation gets
cases generated from the document (valid ones, and in a second pass invalid ones: wrong types,
out-of-range numbers, malformed bodies), sent over HTTPS to the local API gateway and the
real functions, the channels ones signed with SigV4 (``execute-api``) by a signed-in identity.
Every answer must be no 5xx and match the document: a declared status, content type, headers
and body (schemathesis's checks and tests/support/openapi.py's).

``TIDINGS_FUZZ_EXAMPLES`` sets the cases per operation and mode (``make fuzz``: 500); by
default 25, scaled by ``TIDINGS_FUZZ_SCALE`` like the other fuzzers (never fewer than 20).
A generated ``wait`` is cut to at most 0.5 s, so that a long-poll does not hold the run for
20 s; the channel is half the time one the caller may read (so that the valid query
parameters reach the change log), half the time what schemathesis makes up.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.local.stack.local_stack import LocalStack
from tests.support.fuzz import examples
from tests.support.local_stack import add_user, credentials_for, login_over_https, stack_config
from tests.support.openapi import api_document, checked

EXAMPLES_VARIABLE = "TIDINGS_FUZZ_EXAMPLES"
MAX_WAIT_S = 0.5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
USER, PASSWORD = "fuzz-user", "fuzz-password-1"


def cases_per_operation() -> int:
    """``TIDINGS_FUZZ_EXAMPLES`` if set, else 25 scaled by ``TIDINGS_FUZZ_SCALE``."""
    explicit = os.environ.get(EXAMPLES_VARIABLE)
    if explicit:
        return max(1, int(explicit))
    return examples(25)


class SigV4(requests.auth.AuthBase):
    """Signs each prepared request (SigV4, ``execute-api``) as a page's client does."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.signer = SigV4Auth(credentials, "execute-api", region)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signed = AWSRequest(method=request.method, url=request.url, data=request.body, headers={})
        self.signer.add_auth(signed)
        request.headers.update(dict(signed.headers))
        return request


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(stack_config()) as running:
        add_user(running, USER, PASSWORD, {"acme"})
        yield running


@pytest.fixture(scope="module")
def signed(stack: LocalStack) -> tuple[SigV4, list[str]]:
    """The signer of a signed-in identity, and the channels it may read."""
    answer = login_over_https(stack, USER, PASSWORD)
    credential = credentials_for(stack, answer)
    credentials = Credentials(
        credential.access_key_id, credential.secret_access_key, credential.session_token
    )
    readable = [c for c in answer["channels"] if "{" not in c]
    assert readable, answer["channels"]
    return SigV4(credentials, stack.config.region), readable


@pytest.fixture(scope="module")
def schema(stack: LocalStack) -> Any:
    loaded = schemathesis.openapi.from_dict(dict(api_document().document))
    loaded.config.update(base_url=stack.api_url)
    return loaded


def send(case: Any, stack: LocalStack, session: requests.Session, **kwargs: Any) -> int:
    """Send one case; check its answer; its status."""
    response = case.call(session=session, verify=stack.ca_file, timeout=60, **kwargs)
    case.validate_response(response, checks=CHECKS)
    checked(response)
    return int(response.status_code)


MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_login_answers_every_generated_body_as_documented(
    stack: LocalStack, schema: Any, signed: tuple[SigV4, list[str]], mode: GenerationMode
) -> None:
    # ``signed`` first: the identity signs in before the fuzzing fills this address's
    # sign-in buckets (every later login from it gets 429, as documented)
    operation = schema["/v1/login"]["POST"]
    session = requests.Session()
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=cases_per_operation(),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        statuses[send(case, stack, session)] += 1

    fuzz()
    print(f"POST /v1/login ({mode.value}): {dict(sorted(statuses.items()))}")


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_channel_reads_answer_every_generated_request_as_documented(
    stack: LocalStack, schema: Any, signed: tuple[SigV4, list[str]], mode: GenerationMode
) -> None:
    signer, readable = signed
    operation = schema["/v1/channels/{channel+}"]["GET"]
    session = requests.Session()
    statuses: Counter[int] = Counter()
    own = [*readable, "users/me/todos"]  # me: the caller's own identity in an owner's channel
    channels = st.sampled_from([*own, *(f"{c}/changes" for c in own)])

    @settings(
        max_examples=cases_per_operation(),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        channel=st.one_of(st.none(), channels),
    )
    def fuzz(case: Any, channel: str | None) -> None:
        if channel is not None:
            case.path_parameters = {**(case.path_parameters or {}), "channel+": channel}
        _shorten_wait(case)
        statuses[send(case, stack, session, auth=signer)] += 1

    fuzz()
    print(f"GET /v1/channels/{{channel+}} ({mode.value}): {dict(sorted(statuses.items()))}")
    if mode is GenerationMode.POSITIVE:
        # generated cases may all miss (random parameters give 400 and 410): the reads a
        # client makes are sent too, through the same checks, so 200 answers are checked
        for channel in own:
            for path, query in ((channel, None), (f"{channel}/changes", {"after": 0})):
                case = operation.Case(path_parameters={"channel+": path}, query=query)
                assert send(case, stack, session, auth=signer) == 200, path


@pytest.mark.parametrize("path", ["/v1/login", "/v1/channels/{channel+}"])
def test_preflights_answer_as_documented(stack: LocalStack, schema: Any, path: str) -> None:
    operation = schema[path]["OPTIONS"]
    session = requests.Session()

    @settings(
        max_examples=examples(20),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        send(case, stack, session)

    fuzz()


def _shorten_wait(case: Any) -> None:
    query = case.query
    if not isinstance(query, dict) or "wait" not in query:
        return
    value = query["wait"]
    if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_WAIT_S:
        query["wait"] = MAX_WAIT_S
