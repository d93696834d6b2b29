"""Evaluate IAM and AWS IoT policy documents the way AWS does.

The local gateways ask one question on every connect, subscribe, publish and delivery: does
this principal's set of policies allow ``action`` on ``resource``? The rules are IAM's:

- a statement applies when its Action (or NotAction) matches the action, case-insensitively,
  its Resource (or NotResource) matches the resource, case-sensitively, and every condition
  holds; ``*`` matches any run of characters (``/`` and ``:`` included), ``?`` one character;
- an applicable ``Deny`` wins over any ``Allow``; with neither, the answer is an implicit deny;
- with ``Version: 2012-10-17``, ``${name}`` in a Resource or condition value is replaced by the
  value of that policy variable (``cognito-identity.amazonaws.com:sub``, ``iot:ClientId``…),
  as literal text: a ``*`` in a value is not a wildcard. ``${name, 'default'}`` supplies a
  default, and ``${*}``, ``${?}``, ``${$}`` stand for those characters. A variable with no
  value and no default makes that entry match nothing. Without a Version (or with
  ``2008-10-17``) AWS does not substitute variables: ``${…}`` is then plain text, here too;
- for a Cognito identity on AWS IoT two documents sets must allow: the authenticated role's
  IAM policies and the IoT policies attached to the identity (:func:`is_allowed`).

Conditions support ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``, ``Bool`` and ``Null``, the
``ForAnyValue:``/``ForAllValues:`` set prefixes and the ``…IfExists`` suffix. Condition keys
are looked up case-insensitively in ``context``, then in ``variables``. Any other operator
raises :class:`PolicyError`: a policy that cannot be evaluated is an error, never a guess.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["Decision", "PolicyError", "evaluate", "is_allowed", "validate_policy"]

VERSION_WITH_VARIABLES = "2012-10-17"
VERSIONS = frozenset({VERSION_WITH_VARIABLES, "2008-10-17"})

ContextValue = str | list[str]
Matcher = Callable[[str], bool]


class Decision(enum.Enum):
    """The outcome of evaluating policies for one request."""

    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


class PolicyError(ValueError):
    """A policy document that cannot be evaluated; the message names the statement."""


def evaluate(
    documents: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    variables: Mapping[str, str],
    context: Mapping[str, ContextValue] | None = None,
) -> Decision:
    """Evaluate one set of policy documents for ``action`` on ``resource``.

    Returns :attr:`Decision.EXPLICIT_DENY` if an applicable statement denies,
    :attr:`Decision.ALLOW` if one allows and none denies, else
    :attr:`Decision.IMPLICIT_DENY`. Raises :class:`PolicyError` for a statement that cannot be
    evaluated.
    """
    values = _Values(variables, context)
    allowed = False
    for doc_index, document in enumerate(documents):
        substitute = _substitutes_variables(document, doc_index)
        for where, statement in _statements(document, doc_index):
            effect = statement.get("Effect")
            if effect == "Allow":
                if allowed:
                    continue
            elif effect != "Deny":
                raise PolicyError(f"{where}: Effect must be 'Allow' or 'Deny', not {effect!r}")
            if _applies(statement, where, action, resource, values, substitute):
                if effect == "Deny":
                    return Decision.EXPLICIT_DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def is_allowed(
    policy_sets: Iterable[Iterable[Mapping[str, Any]]],
    action: str,
    resource: str,
    variables: Mapping[str, str],
    context: Mapping[str, ContextValue] | None = None,
) -> bool:
    """True iff every set of documents allows and none denies (IAM role policy AND IoT policy).

    An empty ``policy_sets`` allows nothing.
    """
    seen = False
    for documents in policy_sets:
        seen = True
        if evaluate(documents, action, resource, variables, context) is not Decision.ALLOW:
            return False
    return seen


def validate_policy(document: Any) -> None:
    """Raise :class:`PolicyError` naming the first problem in ``document``, if any.

    Checks what :func:`evaluate` relies on, for every statement: the top-level keys, Version,
    Statement, Effect, exactly one of Action/NotAction and of Resource/NotResource (strings or
    lists of strings), no Principal (identity and IoT policies have none), and conditions
    with supported operators and string, boolean or number values.
    """
    if not isinstance(document, Mapping):
        raise PolicyError(f"a policy document must be a JSON object, not {type(document).__name__}")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"policy document has unknown element(s) {sorted(map(str, unknown))}")
    _substitutes_variables(document, 0)
    statements = document.get("Statement")
    if isinstance(statements, list) and not statements:
        raise PolicyError("policy document has an empty Statement list")
    allowed_keys = {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
    for where, statement in _statements(document, 0):
        if "Principal" in statement or "NotPrincipal" in statement:
            raise PolicyError(f"{where}: identity and IoT policies cannot name a Principal")
        extra = set(statement) - allowed_keys
        if extra:
            raise PolicyError(f"{where}: unknown element(s) {sorted(map(str, extra))}")
        sid = statement.get("Sid")
        if sid is not None and not isinstance(sid, str):
            raise PolicyError(f"{where}: Sid must be a string")
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(
                f"{where}: Effect must be 'Allow' or 'Deny', not {statement.get('Effect')!r}"
            )
        _one_of(statement, "Action", "NotAction", where)
        _one_of(statement, "Resource", "NotResource", where)
        condition = statement.get("Condition")
        if condition is not None:
            for operator, block in _condition_blocks(condition, where):
                _operator(operator, where)
                for key, raw in _condition_entries(block, operator, where):
                    _policy_values(raw, where, operator, key)


# --- statements ----------------------------------------------------------------------------


def _substitutes_variables(document: Any, doc_index: int) -> bool:
    if not isinstance(document, Mapping):
        raise PolicyError(f"document {doc_index}: a policy document must be a JSON object")
    version = document.get("Version")
    if version is None:
        return False
    if version not in VERSIONS:
        raise PolicyError(
            f"document {doc_index}: Version must be '2012-10-17' or '2008-10-17', not {version!r}"
        )
    return bool(version == VERSION_WITH_VARIABLES)


class _Where:
    """Names a statement in error messages (formatted only when an error is raised)."""

    __slots__ = ("doc_index", "index", "statement")

    def __init__(self, doc_index: int, index: int, statement: Mapping[str, Any]) -> None:
        self.doc_index = doc_index
        self.index = index
        self.statement = statement

    def __str__(self) -> str:
        sid = self.statement.get("Sid")
        label = f" (Sid {sid!r})" if sid else ""
        return f"document {self.doc_index}, statement {self.index}{label}"


def _statements(
    document: Mapping[str, Any], doc_index: int
) -> Iterator[tuple[_Where, Mapping[str, Any]]]:
    raw = document.get("Statement")
    if isinstance(raw, Mapping):
        items: list[Any] = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise PolicyError(f"document {doc_index}: Statement must be an object or a list of objects")
    for index, statement in enumerate(items):
        if not isinstance(statement, Mapping):
            raise PolicyError(
                f"document {doc_index}, statement {index}: a statement must be a JSON object"
            )
        yield _Where(doc_index, index, statement), statement


def _one_of(
    statement: Mapping[str, Any], positive: str, negative: str, where: _Where
) -> tuple[bool, tuple[str, ...]]:
    """(negated, patterns) of the one element present among ``positive``/``negative``."""
    has_positive = positive in statement
    if has_positive == (negative in statement):
        raise PolicyError(f"{where}: exactly one of {positive} and {negative} is required")
    name = positive if has_positive else negative
    raw = statement[name]
    if isinstance(raw, str):
        patterns: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(p, str) for p in raw):
        patterns = tuple(raw)
    else:
        raise PolicyError(f"{where}: {name} must be a string or a non-empty list of strings")
    return not has_positive, patterns


def _applies(
    statement: Mapping[str, Any],
    where: _Where,
    action: str,
    resource: str,
    values: _Values,
    substitute: bool,
) -> bool:
    negated, actions = _one_of(statement, "Action", "NotAction", where)
    if any(_action_matcher(p)(action) for p in actions) == negated:
        return False
    negated, resources = _one_of(statement, "Resource", "NotResource", where)
    matched = False
    for pattern in resources:
        matcher = _pattern_matcher(pattern, values, substitute, ignore_case=False)
        if matcher is not None and matcher(resource):
            matched = True
            break
    if matched == negated:
        return False
    condition = statement.get("Condition")
    if condition is None:
        return True
    return _conditions_hold(condition, where, values, substitute)


# --- patterns ------------------------------------------------------------------------------


class _Var(NamedTuple):
    name: str
    default: str | None


class _Literal(NamedTuple):
    text: str


_Part = str | _Var | _Literal
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_BODY = re.compile(r"\s*([^,'\s][^,']*?)\s*(?:,\s*'([^']*)'\s*)?")
_SPECIALS = {"*": "*", "?": "?", "$": "$"}


def _always(_: str) -> bool:
    return True


@lru_cache(maxsize=4096)
def _glob_source(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


@lru_cache(maxsize=8192)
def _compiled(source: str, ignore_case: bool) -> Matcher:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    fullmatch = re.compile(source, flags).fullmatch
    return lambda value: fullmatch(value) is not None


@lru_cache(maxsize=8192)
def _glob_matcher(pattern: str, ignore_case: bool) -> Matcher:
    if pattern == "*":
        return _always
    if "*" not in pattern and "?" not in pattern:
        if ignore_case:
            folded = pattern.lower()
            return lambda value: value.lower() == folded
        return pattern.__eq__
    return _compiled(_glob_source(pattern), ignore_case)


def _action_matcher(pattern: str) -> Matcher:
    return _glob_matcher(pattern, True)


@lru_cache(maxsize=4096)
def _template(pattern: str) -> tuple[tuple[_Part, ...], bool]:
    """The pattern split into glob text, variables and escaped literals; and has-wildcards."""
    parts: list[_Part] = []
    position = 0
    for match in _VARIABLE.finditer(pattern):
        if match.start() > position:
            parts.append(pattern[position : match.start()])
        body = match.group(1)
        special = _SPECIALS.get(body.strip())
        parsed = _VARIABLE_BODY.fullmatch(body)
        if special is not None:
            parts.append(_Literal(special))
        elif parsed is not None:
            parts.append(_Var(parsed.group(1), parsed.group(2)))
        else:
            parts.append(match.group(0))  # not a variable reference: plain text
        position = match.end()
    if position < len(pattern):
        parts.append(pattern[position:])
    wildcards = any(isinstance(p, str) and ("*" in p or "?" in p) for p in parts)
    return tuple(parts), wildcards


def _pattern_matcher(
    pattern: str, values: _Values, substitute: bool, *, ignore_case: bool
) -> Matcher | None:
    """A matcher for ``pattern`` with variables filled in, or None if one has no value."""
    if not substitute or "${" not in pattern:
        return _glob_matcher(pattern, ignore_case)
    parts, wildcards = _template(pattern)
    if not wildcards:
        text = _substituted(parts, values)
        if text is None:
            return None
        return _equals_folded(text.lower()) if ignore_case else text.__eq__
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(_glob_source(part))
            continue
        value = _part_value(part, values)
        if value is None:
            return None
        pieces.append(re.escape(value))
    return _compiled("".join(pieces), ignore_case)


def _part_value(part: _Var | _Literal, values: _Values) -> str | None:
    if isinstance(part, _Literal):
        return part.text
    value = values.variable(part.name)
    return part.default if value is None else value


def _substituted(parts: tuple[_Part, ...], values: _Values) -> str | None:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _part_value(part, values)
        if value is None:
            return None
        out.append(value)
    return "".join(out)


# --- values --------------------------------------------------------------------------------


class _Values:
    """Policy variables and condition keys for one evaluation (looked up lazily)."""

    __slots__ = ("_context", "_folded", "_variables")

    def __init__(
        self, variables: Mapping[str, str], context: Mapping[str, ContextValue] | None
    ) -> None:
        self._variables = variables
        self._context: Mapping[str, ContextValue] = context or {}
        self._folded: dict[str, list[str]] | None = None

    def variable(self, name: str) -> str | None:
        """The single value of a policy variable, or None."""
        value = self._variables.get(name)
        if value is not None:
            return value
        found = self.key(name)
        if found is not None and len(found) == 1:
            return found[0]
        return None

    def key(self, name: str) -> list[str] | None:
        """All values of a condition key (case-insensitive), or None when it is absent."""
        if self._folded is None:
            folded: dict[str, list[str]] = {}
            for source in (self._variables, self._context):
                for key, value in source.items():
                    folded[key.lower()] = [value] if isinstance(value, str) else list(value)
            self._folded = folded
        return self._folded.get(name.lower())


# --- conditions ----------------------------------------------------------------------------


class _Operator(NamedTuple):
    kind: str  # equals | iequals | like | bool | null
    negated: bool
    set_operator: str | None  # ForAnyValue | ForAllValues
    if_exists: bool


_BASE_OPERATORS = {
    "StringEquals": ("equals", False),
    "StringNotEquals": ("equals", True),
    "StringEqualsIgnoreCase": ("iequals", False),
    "StringNotEqualsIgnoreCase": ("iequals", True),
    "StringLike": ("like", False),
    "StringNotLike": ("like", True),
    "Bool": ("bool", False),
}


@lru_cache(maxsize=256)
def _parse_operator(operator: str) -> _Operator | None:
    if operator == "Null":
        return _Operator("null", False, None, False)
    set_operator, _, base = operator.rpartition(":")
    if set_operator not in ("", "ForAnyValue", "ForAllValues"):
        return None
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    known = _BASE_OPERATORS.get(base)
    if known is None:
        return None
    return _Operator(known[0], known[1], set_operator or None, if_exists)


def _operator(operator: Any, where: _Where) -> _Operator:
    parsed = _parse_operator(operator) if isinstance(operator, str) else None
    if parsed is None:
        supported = ", ".join([*_BASE_OPERATORS, "Null"])
        raise PolicyError(
            f"{where}: unsupported condition operator {operator!r} (supported: {supported}, "
            "with ForAnyValue:/ForAllValues: and …IfExists)"
        )
    return parsed


def _condition_blocks(condition: Any, where: _Where) -> Iterator[tuple[Any, Any]]:
    if not isinstance(condition, Mapping):
        raise PolicyError(f"{where}: Condition must be an object")
    return iter(condition.items())


def _condition_entries(block: Any, operator: str, where: _Where) -> Iterator[tuple[Any, Any]]:
    if not isinstance(block, Mapping) or not block:
        raise PolicyError(f"{where}: Condition {operator} must map condition keys to values")
    return iter(block.items())


def _policy_values(raw: Any, where: _Where, operator: str, key: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(item)
        elif isinstance(item, int | float):
            out.append(str(item))
        else:
            raise PolicyError(
                f"{where}: Condition {operator} {key!r} values must be strings, booleans or numbers"
            )
    if not out or not isinstance(key, str):
        raise PolicyError(f"{where}: Condition {operator} {key!r} needs a key and a value")
    if operator == "Null" and any(v.lower() not in ("true", "false") for v in out):
        raise PolicyError(f"{where}: Condition Null {key!r} takes 'true' or 'false'")
    return tuple(out)


def _conditions_hold(condition: Any, where: _Where, values: _Values, substitute: bool) -> bool:
    for operator_name, block in _condition_blocks(condition, where):
        operator = _operator(operator_name, where)
        for key, raw in _condition_entries(block, operator_name, where):
            policy_values = _policy_values(raw, where, operator_name, key)
            if not _condition_holds(operator, key, policy_values, values, substitute):
                return False
    return True


def _condition_holds(
    operator: _Operator,
    key: str,
    policy_values: tuple[str, ...],
    values: _Values,
    substitute: bool,
) -> bool:
    present = values.key(key)
    if operator.kind == "null":
        absent = not present
        return any((v.lower() == "true") == absent for v in policy_values)
    if present is None:
        if operator.if_exists:
            return True
        if operator.set_operator == "ForAllValues":
            return True
        if operator.set_operator == "ForAnyValue":
            return False
        return operator.negated
    matchers = _value_matchers(operator.kind, policy_values, values, substitute)

    def one(value: str) -> bool:
        hit = any(match(value) for match in matchers)
        return not hit if operator.negated else hit

    if operator.set_operator == "ForAllValues":
        return all(one(v) for v in present)
    if operator.set_operator == "ForAnyValue" or not operator.negated:
        return any(one(v) for v in present)
    return all(one(v) for v in present)


def _value_matchers(
    kind: str, policy_values: tuple[str, ...], values: _Values, substitute: bool
) -> list[Matcher]:
    matchers: list[Matcher] = []
    for raw in policy_values:
        if kind == "like":
            matcher = _pattern_matcher(raw, values, substitute, ignore_case=False)
            if matcher is not None:
                matchers.append(matcher)
            continue
        if kind == "bool":
            matchers.append(_equals_folded(raw.lower()))
            continue
        text: str | None = raw
        if substitute and "${" in raw:
            text = _substituted(_template(raw)[0], values)
        if text is None:
            continue
        matchers.append(_equals_folded(text.lower()) if kind == "iequals" else text.__eq__)
    return matchers


def _equals_folded(expected: str) -> Matcher:
    return lambda value: value.lower() == expected
