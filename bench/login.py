"""Login benchmark: logins/s and p50/p99 for ``password`` and ``id_token`` (issue [2] §F).

Two levels for each method, each first on one core (one thread) and then with one process
per core:

* **check** — the cost the method itself adds: verifying a password hash
  (``auth.passwords.verify_password``) or an ID token with its JWKS cached
  (``auth.tokens.verify_id_token``). This is what the goals are about (password ≥ 10/s per
  core at OWASP strength; id_token ≥ 500/s);
* **full** — the whole ``POST /v1/login`` through the Lambda's HTTP edge, against the local
  stack in this process: moto (DynamoDB users table, IoT) and the local identity service
  (``GetOpenIdTokenForDeveloperIdentity``, SigV4-verified). Each login does 3 to 6 HTTP calls to
  those emulators, which dominate here; on AWS they are DynamoDB/Cognito round trips.

The hash parameters are reported with the numbers: argon2id (default; OWASP m=19 MiB, t=2,
p=1) and, for comparison, scrypt at OWASP's minimum (N=2^17, r=8, p=1).

Usage::

    .venv/bin/python bench/login.py            # about a minute
    .venv/bin/python bench/login.py --quick    # a few seconds per figure

Writes ``bench/results/login.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from auth.passwords import (  # noqa: E402
    ARGON2_PARAMETERS,
    SCRYPT_PARAMETERS,
    hash_password,
    verify_password,
)
from auth.settings import OidcIssuer  # noqa: E402
from auth.tokens import JwksCache, verify_id_token  # noqa: E402
from bench.report import write_report  # noqa: E402

ISSUER = "https://idp.bench.test/pool"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONFIG = OidcIssuer(ISSUER, ("bench-client",), "https://idp.bench.test/jwks.json")
PASSWORD = "correct horse battery staple"


def _jwks(_url: str) -> dict[str, Any]:
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    key.update({"kid": "bench", "alg": "RS256"})
    return {"keys": [key]}


def _token(sub: str = "bench-user") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "bench-client",
        "sub": sub,
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "bench"})


def _measure(operation: Callable[[], Any], seconds: float, at_least: int = 5) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < at_least:
        began = time.perf_counter()
        operation()
        latencies.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    return _summary(latencies, elapsed)


def _summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


def _check_operation(kind: str) -> Callable[[], Any]:
    if kind == "argon2id":
        stored = hash_password(PASSWORD, "argon2id")
        return lambda: verify_password(PASSWORD, stored)
    if kind == "scrypt":
        stored = hash_password(PASSWORD, "scrypt")
        return lambda: verify_password(PASSWORD, stored)
    cache = JwksCache(_jwks)
    token = _token()
    return lambda: verify_id_token(token, [CONFIG], cache)


def _check_worker(kind: str, seconds: float) -> tuple[list[float], float]:
    operation = _check_operation(kind)
    operation()  # warm up (JWKS fetch, hash of the dummy)
    result: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(result) < 3:
        began = time.perf_counter()
        operation()
        result.append(time.perf_counter() - began)
    return result, time.perf_counter() - start


def check(kind: str, seconds: float, processes: int) -> dict[str, Any]:
    """Throughput and latency of one check kind, on one core and on ``processes`` cores."""
    single = _summary(*_check_worker(kind, seconds))
    with ProcessPoolExecutor(processes) as pool:
        runs = list(pool.map(_check_worker, [kind] * processes, [seconds] * processes))
    merged = [latency for latencies, _ in runs for latency in latencies]
    parallel = _summary(merged, max(elapsed for _, elapsed in runs))
    return {"one_core": single, f"{processes}_processes": parallel}


def full(seconds: float) -> dict[str, Any]:
    """The whole login through the HTTP edge against moto + the local identity service."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from auth.http import handle_login_event
    from tests.support.moto_server import login_event, signin_stack

    issuers = (CONFIG,)
    with signin_stack(issuers=issuers, jwks_fetch=_jwks) as stack:
        stack.add_user("bench", PASSWORD)
        password_event = login_event(
            {"method": "password", "username": "bench", "password": PASSWORD}
        )
        token_event = login_event({"method": "id_token", "id_token": _token()})

        def login(event: dict[str, Any]) -> None:
            result = handle_login_event(event, stack.service)
            if result["statusCode"] != 200:
                raise RuntimeError(result["body"])

        login(password_event)
        login(token_event)
        return {
            "password": _measure(lambda: login(password_event), seconds),
            "id_token": _measure(lambda: login(token_event), seconds),
        }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "login.json")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else 6.0
    processes = os.cpu_count() or 1
    results: dict[str, Any] = {
        "machine": {
            "cpus": processes,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "hash_parameters": {
            "argon2id": {
                **ARGON2_PARAMETERS,
                "memory_mib": ARGON2_PARAMETERS["memory_cost"] / 1024,
                "default": True,
            },
            "scrypt": {
                "n": 2**SCRYPT_PARAMETERS.log2_n,
                "r": SCRYPT_PARAMETERS.r,
                "p": SCRYPT_PARAMETERS.p,
                "memory_mib": 128 * SCRYPT_PARAMETERS.r * 2**SCRYPT_PARAMETERS.log2_n / 2**20,
            },
        },
        "goals": {"password_per_s_per_core": 10, "id_token_per_s": 500},
        "check": {
            "password_argon2id": check("argon2id", seconds, processes),
            "password_scrypt": check("scrypt", seconds, processes),
            "id_token_cached_jwks": check("id_token", seconds, processes),
        },
        "full_login_local_stack": full(seconds),
    }
    write_report(results, args.output)
    checks = results["check"]
    print(f"{'':28} {'one core/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'all cores/s':>12}")
    for name, figures in checks.items():
        one, many = figures["one_core"], figures[f"{processes}_processes"]
        print(
            f"{name:28} {one['per_s']:>11} {one['p50_ms']:>8} {one['p99_ms']:>8} "
            f"{many['per_s']:>12}"
        )
    for name, figures in results["full_login_local_stack"].items():
        print(
            f"full login {name:17} {figures['per_s']:>11} {figures['p50_ms']:>8} "
            f"{figures['p99_ms']:>8}"
        )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
