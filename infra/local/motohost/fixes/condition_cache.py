"""Parsed condition expressions remembered; a syntax error answered with HTTP 400.

moto 5.2.5 parses a condition expression two or three times per action (validation, the
transaction's check, the write): a transaction of the publisher parsed 33 of them. It answers
an expression it cannot parse with HTTP 500. DynamoDB answers a syntax error with HTTP 400
``ValidationException``.

The fix remembers parsed conditions by their text, names and values (the tree is read-only
once built), the most recent 1,024, so ``attribute_not_exists(pk)`` is parsed once; an
invalid expression is not kept, and a syntax error is answered with HTTP 400
``ValidationException``, as DynamoDB does.
"""

from __future__ import annotations

import json
import threading
from typing import Any

__all__ = ["apply", "apply_condition_cache"]


def apply_condition_cache(size: int = 1024) -> None:
    """Remember parsed condition expressions, the ``size`` most recent (idempotent)."""
    from collections import OrderedDict

    from moto.dynamodb import comparisons
    from moto.dynamodb.exceptions import MockValidationException

    parser_class: Any = comparisons.ConditionExpressionParser
    if getattr(parser_class, "_tidings_fixed", False):
        return
    original = parser_class.parse
    parsed: OrderedDict[tuple[Any, ...], tuple[Any, list[str], list[str]]] = OrderedDict()
    lock = threading.Lock()

    def parse(self: Any) -> Any:
        if self.condition_expression is None:
            return original(self)
        try:
            key = (
                self.condition_expression,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                json.dumps(self.expression_attribute_values, sort_keys=True),
            )
        except (TypeError, ValueError):
            return original(self)
        with lock:
            hit = parsed.get(key)
            if hit is not None:
                parsed.move_to_end(key)
        if hit is None:
            try:
                tree = original(self)  # an invalid expression is not kept
            except ValueError as exc:  # moto answers a syntax error with HTTP 500; AWS, 400
                raise MockValidationException(f"Invalid expression: {exc}") from exc
            hit = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            with lock:
                parsed[key] = hit
                while len(parsed) > size:
                    parsed.popitem(last=False)
        tree, names, values = hit
        self.expr_attr_names_found = list(names)
        self.expr_attr_values_found = list(values)
        return tree

    parser_class.parse = parse
    parser_class._tidings_fixed = True


apply = apply_condition_cache
