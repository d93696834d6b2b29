"""The sign-in buckets: which a login counts against, their windows and Retry-After (pure)."""

from __future__ import annotations

from auth.rate_limit import HOUR_S, Bucket, buckets_for
from auth.settings import RateLimits

LIMITS = RateLimits(
    account_address_max_failures=5,
    account_hourly_max_failures=30,
    address_max_failures=50,
    window_s=900,
)


def test_a_password_login_from_a_stranger_counts_against_three_buckets():
    buckets = buckets_for(LIMITS, "192.0.2.1", "user:alice", familiar=False)
    assert [(b.key, b.limit, b.window_s) for b in buckets] == [
        ("account-address#user:alice#192.0.2.1", 5, 900),
        ("account#user:alice", 30, HOUR_S),
        ("address#192.0.2.1", 50, 900),
    ]


def test_a_familiar_address_skips_the_account_wide_bucket():
    keys = [b.key for b in buckets_for(LIMITS, "192.0.2.1", "user:alice", familiar=True)]
    assert keys == ["account-address#user:alice#192.0.2.1", "address#192.0.2.1"]


def test_a_login_that_names_no_account_counts_only_against_its_address():
    assert [b.key for b in buckets_for(LIMITS, "192.0.2.9", None, familiar=False)] == [
        "address#192.0.2.9"
    ]


def test_windows_are_fixed_and_retry_after_runs_to_the_windows_end():
    bucket = Bucket("address#x", 5, 900)
    assert bucket.window_start(1_000_000.0) == 999_900
    assert bucket.store_key(1_000_000.0) == "address#x#999900"
    assert bucket.store_key(1_000_799.9) == "address#x#999900"
    assert bucket.store_key(1_000_800.0) == "address#x#1000800"
    assert bucket.retry_after_s(1_000_000.0) == 800
    assert bucket.retry_after_s(1_000_799.5) == 1  # never 0: a client would retry at once
