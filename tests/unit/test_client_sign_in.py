"""Signing in as typed values: secrets kept out of reprs, nothing unknown sent to the server,
the 0.x ``method=`` form deprecated but working, and a failed connect leaves no thread."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator

import pytest

import client_sdk
from client_sdk import (
    ClientOptions,
    ConnectTimeout,
    Device,
    IdToken,
    Password,
    ServiceUnavailable,
    SignInFailed,
    Tidings,
)
from client_sdk._client import resolve_connect_arguments
from client_sdk._signin import login_body
from tests.support.threads import left_running, python_threads

OPTIONS = ClientOptions(connect_timeout_s=1.0)


def test_reprs_and_strs_hide_the_secrets() -> None:
    values = [
        Password("ann", "s3cret-pw"),
        IdToken("eyJ.s3cret-pw.sig"),
        IdToken(lambda: "eyJ.s3cret-pw.sig"),
        Device("sensor-7", "s3cret-pw"),
    ]
    for value in values:
        assert "s3cret" not in repr(value) and "s3cret" not in str(value)
        assert "***" in repr(value)
    assert repr(Password("ann", "x")) == "Password(username='ann', password='***')"
    assert repr(Device("sensor-7", "x")) == "Device(thing_name='sensor-7', secret='***')"


def test_sign_in_values_are_frozen_and_checked() -> None:
    value = Password("ann", "pw")
    with pytest.raises(AttributeError):
        value.password = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="username is empty"):
        Password("", "pw")
    with pytest.raises(TypeError, match="secret must be a str"):
        Device("d", None)  # type: ignore[arg-type]
    assert Password("ann", "pw") == Password("ann", "pw")


def test_login_bodies_are_the_api_s() -> None:
    assert login_body(Password("ann", "pw")) == {
        "method": "password",
        "username": "ann",
        "password": "pw",
    }
    assert login_body(Device("d1", "s")) == {"method": "device", "thing_name": "d1", "secret": "s"}
    tokens = iter(["t1", "t2"])
    fresh = IdToken(lambda: next(tokens))  # a provider: each sign-in gets a current token
    assert login_body(fresh) == {"method": "id_token", "id_token": "t1"}
    assert login_body(fresh) == {"method": "id_token", "id_token": "t2"}


def test_a_typed_sign_in_takes_no_other_keyword() -> None:
    for extra in ({"username": "ann"}, {"ca_file": "/ca.pem"}, {"pasword": "typo"}):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            resolve_connect_arguments(Password("ann", "pw"), None, None, extra)
    with pytest.raises(TypeError, match="'method'"):
        resolve_connect_arguments(Password("ann", "pw"), None, "password", {})
    sign_in, options, deprecated = resolve_connect_arguments(IdToken("t"), OPTIONS, None, {})
    assert sign_in == IdToken("t") and options is OPTIONS and not deprecated


def test_a_mistyped_field_of_the_old_form_is_refused_not_sent() -> None:
    with pytest.raises(TypeError, match="'pasword'"):
        resolve_connect_arguments("password", None, None, {"username": "a", "pasword": "x"})
    with pytest.raises(TypeError, match="needs password"):
        resolve_connect_arguments("password", None, None, {"username": "a"})
    with pytest.raises(ValueError, match="unknown sign-in method 'passwd'"):
        resolve_connect_arguments("passwd", None, None, {"username": "a", "password": "x"})
    with pytest.raises(TypeError, match="needs a sign-in"):
        resolve_connect_arguments(None, None, None, {})
    with pytest.raises(TypeError, match="not dict"):
        resolve_connect_arguments({"method": "password"}, None, None, {})  # type: ignore[arg-type]


def test_options_are_not_both_a_keyword_and_options() -> None:
    with pytest.raises(TypeError, match="options= and the option 'fallback_after_s'"):
        resolve_connect_arguments(
            "password", OPTIONS, None, {"username": "a", "password": "x", "fallback_after_s": 1}
        )


def test_the_old_form_still_resolves_and_says_it_is_deprecated() -> None:
    sign_in, options, deprecated = resolve_connect_arguments(
        None, None, "device", {"thing_name": "d1", "secret": "s", "poll_wait_s": 3.0}
    )
    assert sign_in == Device("d1", "s") and options.poll_wait_s == 3.0 and deprecated
    sign_in, _, deprecated = resolve_connect_arguments(
        "id_token", OPTIONS, None, {"id_token": "jwt"}
    )
    assert sign_in == IdToken("jwt") and deprecated


def test_connect_refuses_an_unknown_keyword_before_any_request() -> None:
    before = python_threads()
    with pytest.raises(TypeError, match="'pasword'"):
        Tidings.connect(  # type: ignore[call-overload]
            "http://127.0.0.1:9", Password("ann", "pw"), options=OPTIONS, pasword="x"
        )
    assert left_running(before) == []


def test_the_deprecated_form_warns_then_tries_to_sign_in() -> None:
    before = python_threads()
    with (
        pytest.warns(DeprecationWarning, match="Password\\(username, password\\)"),
        pytest.raises(ServiceUnavailable, match="cannot reach"),
    ):
        Tidings.connect(
            f"http://127.0.0.1:{_closed_port()}",
            "password",
            username="ann",
            password="pw",
            options=OPTIONS,
        )
    assert left_running(before) == []


def test_an_unreachable_api_raises_and_leaves_no_thread() -> None:
    before = python_threads()
    with pytest.raises(ServiceUnavailable, match="cannot reach"):
        Tidings.connect(f"http://127.0.0.1:{_closed_port()}", Password("a", "b"), options=OPTIONS)
    assert left_running(before) == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_an_api_that_never_answers_is_a_connect_timeout(silent_port: int) -> None:
    before = python_threads()
    with pytest.raises(ConnectTimeout, match="did not answer in time"):
        Tidings.connect(f"http://127.0.0.1:{silent_port}", Password("a", "b"), options=OPTIONS)
    assert left_running(before) == []


def test_login_error_is_the_old_name_of_sign_in_failed() -> None:
    with pytest.warns(DeprecationWarning, match="SignInFailed"):
        old = client_sdk.LoginError
    assert old is SignInFailed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from client_sdk import LoginError
    try:
        raise SignInFailed("refused")
    except LoginError as caught:  # 0.x code keeps working for 1.x
        assert str(caught) == "refused"
    assert issubclass(client_sdk.RateLimited, SignInFailed)
    assert issubclass(ConnectTimeout, ServiceUnavailable)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
