"""The credential store and its file format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local.awsauth.credential_store import (
    CredentialFileError,
    CredentialStore,
    write_credentials_file,
)
from infra.local.awsauth.temporary_credentials import mint_temporary_credential


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    credential = mint_temporary_credential(
        "us-east-1:abc",
        [[{"Version": "2012-10-17", "Statement": []}]],
        lifetime_s=60,
        variables={"cognito-identity.amazonaws.com:sub": "us-east-1:abc"},
        now=1000.0,
    )
    path = tmp_path / "creds.json"
    write_credentials_file(path, [credential])
    loaded = CredentialStore.from_file(path).get(credential.access_key_id)
    assert loaded == credential
    assert credential.access_key_id.startswith("ASIA") and credential.expiration == 1060.0
    assert loaded is not None and loaded.is_expired(1060.0) and not loaded.is_expired(1059.0)


def test_iso_expiration_and_purge(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "credentials": [
                    {
                        "access_key_id": "AKIDEXAMPLE",
                        "secret_access_key": "s",
                        "principal": "p",
                        "expiration": "1970-01-01T00:16:40Z",
                    }
                ]
            }
        )
    )
    store = CredentialStore.from_file(path)
    assert store.purge_expired(now=1000.0 + 3601) == 1 and len(store) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"creds": []}', '"credentials" list'),
        ('{"credentials": [{"access_key_id": "A"}]}', "credentials[0]: 'secret_access_key'"),
        (
            '{"credentials": [{"access_key_id": "A", "secret_access_key": "s", "principal": "p",'
            ' "expiration": "tomorrow"}]}',
            "'expiration' must be ISO 8601",
        ),
        (
            '{"credentials": [{"access_key_id": "A", "secret_access_key": "s", "principal": "p",'
            ' "policy_sets": [{}]}]}',
            "'policy_sets' must be a list of lists",
        ),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CredentialFileError) as raised:
        CredentialStore.from_file(path)
    assert message in str(raised.value)
