"""The local Lambda runtime times an invocation as AWS does: the init phase is not counted."""

from __future__ import annotations

from infra.local.functions.runtime import FunctionPool, FunctionSpec


def test_a_slow_init_does_not_count_against_the_function_timeout():
    spec = FunctionSpec(
        "SlowInit",
        "tests.support.slow_init_handler.handler",
        {"SLOW_INIT_S": "4"},
        timeout_s=1,
        max_concurrency=1,
    )
    pool = FunctionPool(spec)
    try:
        assert pool.invoke({"n": 1})["body"] == "initialised"
        assert pool.invoke({"n": 2})["event"] == {"n": 2}  # warm: no init again
        assert pool.cold_starts == 1
    finally:
        pool.close()
