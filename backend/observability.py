"""Structured JSON logs and CloudWatch EMF metrics (aws-lambda-powertools).

Powertools' ``Logger`` writes one JSON object per line with the Lambda context fields, and
``Metrics`` writes Embedded Metric Format documents to stdout, which CloudWatch turns into
metrics without any API call from the function. Both are created once per process.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

__all__ = ["METRICS_NAMESPACE", "make_logger", "make_metrics"]

METRICS_NAMESPACE = "Tidings"


def make_logger(service: str) -> Logger:
    """A JSON logger for one service (level from ``POWERTOOLS_LOG_LEVEL``, default INFO)."""
    return Logger(service=service)


def make_metrics(service: str, stage: str) -> Metrics:
    """An EMF metrics emitter in the ``Tidings`` namespace with a ``stage`` dimension."""
    metrics = Metrics(namespace=METRICS_NAMESPACE, service=service)
    metrics.set_default_dimensions(stage=stage)
    return metrics
