"""DynamoDB typed attribute values → plain JSON values, and JSON text with exact numbers.

``{"N": "0.1"}`` becomes ``Decimal("0.1")`` (``int`` when integral), never a float, and
:func:`dumps` writes numbers digit for digit, so a number survives the trip from DynamoDB to
the client unchanged. Binary values become their base64 text (as in DynamoDB JSON); sets
become lists.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from backend.errors import RecordError

__all__ = ["JsonValue", "dumps", "from_attribute", "from_image", "loads"]

JsonValue = Union[None, bool, int, Decimal, str, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007
"""A plain JSON value whose non-integral numbers are :class:`~decimal.Decimal`."""

_encode_string = json.encoder.encode_basestring


def from_image(image: Mapping[str, Any]) -> dict[str, JsonValue]:
    """A typed item image (``{"a": {"S": "x"}}``) as a plain mapping (``{"a": "x"}``)."""
    return {name: from_attribute(value) for name, value in image.items()}


def from_attribute(value: Any) -> JsonValue:
    """One typed attribute value as a plain JSON value."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise RecordError(f"not a DynamoDB attribute value: {value!r:.80}")
    ((kind, content),) = value.items()
    if kind == "S":
        return str(content)
    if kind == "N":
        return _number(content)
    if kind == "BOOL":
        return bool(content)
    if kind == "NULL":
        return None
    if kind == "M":
        return {str(k): from_attribute(v) for k, v in content.items()}
    if kind == "L":
        return [from_attribute(v) for v in content]
    if kind == "SS":
        return [str(v) for v in content]
    if kind == "NS":
        return [_number(v) for v in content]
    if kind == "B":
        return _binary(content)
    if kind == "BS":
        return [_binary(v) for v in content]
    raise RecordError(f"unknown DynamoDB attribute type {kind!r}")


def _number(text: Any) -> int | Decimal:
    try:
        number = Decimal(str(text))
    except InvalidOperation:
        raise RecordError(f"not a DynamoDB number: {text!r:.40}") from None
    if not number.is_finite():
        raise RecordError(f"not a finite number: {text!r:.40}")
    if number == number.to_integral_value():
        return int(number)
    return number


def _binary(content: Any) -> str:
    if isinstance(content, bytes | bytearray):
        return base64.b64encode(content).decode("ascii")
    return str(content)  # Lambda events carry binary values already base64-encoded


def dumps(value: JsonValue) -> str:
    """Compact JSON text; Decimal numbers are written exactly, never through a float."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: JsonValue, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no JSON form")
        out.append(str(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_encode_string(str(key)))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping non-integral numbers exact (as Decimal)."""
    return json.loads(text, parse_float=Decimal)
