"""Sign-in guessing against the local stack, as an attacker would: parallel bursts, many
addresses, and the owner's own sign-in while it happens.

Requests go over real HTTPS to the local API gateway and the login Lambda's worker processes
(as many at once as the account's unreserved concurrency allows, as on AWS). Each client
binds its own loopback address (127.0.0.x), which the gateway reports as the caller's
``sourceIp``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config
from tests.support.openapi import api_document

PAIR_LIMIT = 5  # RateLimits' defaults: the template sets no TIDINGS_LOGIN_* variable
HOURLY_LIMIT = 30


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(stack_config()) as running:
        add_user(running, "vera", "vera-password-1", set())
        add_user(running, "walt", "walt-password-1", set())
        yield running


def post_login(
    stack: LocalStack, username: str, password: str, source: str
) -> tuple[int, dict[str, str], dict[str, str]]:
    """POST /v1/login from the loopback address ``source``: (status, body, headers)."""
    url = urlsplit(stack.api_url)
    context = ssl.create_default_context(cafile=stack.ca_file)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", url.port, context=context, timeout=60, source_address=(source, 0)
    )
    try:
        body = json.dumps({"method": "password", "username": username, "password": password})
        connection.request(
            "POST", f"{url.path}/v1/login", body, {"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        raw = answer.read()
        headers = {k.lower(): v for k, v in answer.getheaders()}
        api_document().check("POST", "/v1/login", answer.status, headers, raw)
        return answer.status, json.loads(raw), headers
    finally:
        connection.close()


def burst(stack: LocalStack, attempts: list[tuple[str, str, str]]) -> list[tuple[int, dict, dict]]:
    """Send every (username, password, source) at once, each on its own connection."""
    results: list[tuple[int, dict, dict] | None] = [None] * len(attempts)
    start = threading.Barrier(len(attempts))

    def one(index: int) -> None:
        start.wait(timeout=30)
        results[index] = post_login(stack, *attempts[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results), "a login request never finished"
    return [result for result in results if result is not None]


def test_a_parallel_burst_gets_no_more_checks_than_the_limit(stack: LocalStack) -> None:
    attempts = [("vera", f"guess-{i}", "127.0.0.2") for i in range(40)]
    attempts[20] = ("vera", "vera-password-1", "127.0.0.2")  # the right one, inside the burst
    results = burst(stack, attempts)
    statuses = [status for status, _, _ in results]
    # 503: more logins at once than the login function's concurrency; Lambda throttles
    # them before they run (as on AWS), which is a refusal without a check too
    assert set(statuses) <= {200, 401, 429, 503}, statuses
    # Every credential check holds a reservation; a wrong guess keeps it, the right password
    # gives it back (auth/rate_limit.py). So the bound is on the wrong guesses checked: at
    # most the limit, wherever the right password lands in the burst (after it succeeds, a
    # sixth check may run, and it is one of the five wrong guesses).
    assert statuses.count(401) <= PAIR_LIMIT, statuses
    assert statuses.count(200) <= 1, statuses
    assert statuses.count(200) + statuses.count(401) >= 1, statuses
    assert statuses.count(429) >= 1, statuses
    for status, body, headers in results:
        if status in (429, 503):
            assert body["error"] == ("too_many_attempts" if status == 429 else "unavailable")
            assert int(headers["retry-after"]) >= 1
    # the attacker's address stays refused for vera, even with the right password ...
    assert post_login(stack, "vera", "vera-password-1", "127.0.0.2")[0] == 429
    # ... but vera signs in from her own address, and the attacker's address is not
    # locked for other accounts
    assert post_login(stack, "vera", "vera-password-1", "127.0.0.3")[0] == 200
    assert post_login(stack, "walt", "walt-password-1", "127.0.0.2")[0] == 200


def test_guesses_from_many_addresses_stay_bounded_and_the_owner_still_signs_in(
    stack: LocalStack,
) -> None:
    # The account-wide budget is per clock hour. A run that crosses the top of an hour
    # would see two budgets, so it is repeated once with a fresh account (a run takes
    # about a minute, so the second one cannot cross again).
    for attempt, user in enumerate(("xena", "yuri")):
        add_user(stack, user, f"{user}-password-1", set())
        first_hour = int(time.time() // 3600)
        home = f"127.0.1.{attempt + 1}"
        assert post_login(stack, user, f"{user}-password-1", home)[0] == 200  # familiar
        wrong = 0
        for host in range(10):  # ten strangers, each up to its own limit for the account
            for guess in range(PAIR_LIMIT):
                status = post_login(stack, user, f"guess-{guess}", f"127.0.{2 + attempt}.{host}")[0]
                assert status in (401, 429)
                wrong += status == 401
        # a new address is refused even with the right password: the budget is spent
        status, body, headers = post_login(stack, user, f"{user}-password-1", "127.0.9.9")
        # the address the owner signed in from before is not locked out
        owner = post_login(stack, user, f"{user}-password-1", home)[0]
        if int(time.time() // 3600) != first_hour:
            continue
        assert wrong == HOURLY_LIMIT
        assert (status, body["error"]) == (429, "too_many_attempts")
        assert 1 <= int(headers["retry-after"]) <= 3600
        assert owner == 200
        return
    raise AssertionError("both runs crossed the top of an hour")
