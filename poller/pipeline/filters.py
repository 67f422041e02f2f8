"""Lambda's filter criteria for SQS: which messages reach the handler.

A pattern is a JSON object in Lambda's (EventBridge's) pattern language, matched against the
message in Lambda's SQS record shape: ``body`` (parsed as JSON when the pattern gives it an
object, compared as the raw string when the pattern gives it a list), ``attributes``,
``messageAttributes`` (``{"name": {"stringValue": ..., "dataType": ...}}``), ``messageId`` ...
Operators: exact values (string, number, null), ``prefix``, ``suffix``, ``equals-ignore-case``,
``wildcard``, ``anything-but``, ``numeric``, ``exists``, and ``$or``. Values in a list are ORed,
fields are ANDed, patterns are ORed. A message no pattern matches is settled as ``filtered``.

No maintained Python implementation of the pattern language is small enough to depend on, so
the matcher is compiled here once per pattern into nested closures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poller.errors import ConfigError
from poller.message import Message, Skip

Matcher = Callable[[Any], bool]
_MISSING = object()
_RECORD_FIELDS = (
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "md5OfMessageAttributes",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
)
_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class FilterPatternError(ConfigError):
    """A filter pattern is not valid JSON or uses the pattern language wrongly."""


class _Invalid(Exception):
    pass


def compile_filters(
    patterns: Sequence[str], key: str = "handler.filters"
) -> Callable[[Mapping[str, Any]], bool]:
    """Compile pattern strings into one predicate over a Lambda SQS record (patterns are ORed).

    Raises FilterPatternError naming the pattern and what is wrong with it.
    """
    compiled = [_compile(text, f"{key}[{i}]") for i, text in enumerate(patterns)]

    def match(record: Mapping[str, Any]) -> bool:
        view = _Record(record)  # the body is parsed at most once for all patterns
        return any(m(view) for m in compiled)

    return match


def compile_pattern(text: str, key: str = "handler.filters[0]") -> Callable[[Mapping[str, Any]], bool]:
    """One pattern as a predicate over a Lambda SQS record."""
    compiled = _compile(text, key)
    return lambda record: compiled(_Record(record))


class _Record(dict):  # type: ignore[type-arg]
    """A record whose body is parsed as JSON once, when a pattern needs it as an object."""

    _parsed: Any = _MISSING

    def parsed_body(self) -> dict[str, Any] | None:
        if self._parsed is _MISSING:
            self._parsed = _json_object(self.get("body"))
        return self._parsed


def _compile(text: str, key: str) -> Callable[[_Record], bool]:
    try:
        pattern = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise FilterPatternError(f"{key} = {text!r} is not valid JSON: {exc}") from None
    try:
        if not isinstance(pattern, dict) or not pattern:
            raise _Invalid("a pattern must be a non-empty JSON object")
        return _object_matcher(pattern, record=True)
    except _Invalid as exc:
        raise FilterPatternError(f"{key} = {text!r}: {exc}") from None


def _json_object(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, str):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _object_matcher(pattern: dict[str, Any], record: bool = False) -> Callable[[Any], bool]:
    """`record`: this level is the SQS record itself (where `body` is a JSON string)."""
    fields: list[tuple[str | None, Callable[[Any], bool]]] = []  # None: the matcher takes the object
    for name, sub in pattern.items():
        if record and name != "$or" and name not in _RECORD_FIELDS:
            raise _Invalid(f"unknown field {name!r} (a record has {', '.join(_RECORD_FIELDS)})")
        if name == "$or":
            if not isinstance(sub, list) or len(sub) < 2 or not all(isinstance(p, dict) and p for p in sub):
                raise _Invalid('"$or" takes a list of at least two non-empty objects')
            alternatives = [_object_matcher(p, record) for p in sub]
            fields.append((None, lambda value, alts=alternatives: any(a(value) for a in alts)))
        elif isinstance(sub, dict):
            if not sub:
                raise _Invalid(f"field {name!r} has an empty object")
            if record and name == "body":
                fields.append((None, _body(_object_matcher(sub))))
            else:
                fields.append((name, _nested(_object_matcher(sub))))
        elif isinstance(sub, list):
            if not sub:
                raise _Invalid(f"field {name!r} has an empty list of values")
            fields.append((name, _leaf(name, sub)))
        else:
            raise _Invalid(f"field {name!r} must be a list of values or an object, got {json.dumps(sub)}")

    def match(obj: Any) -> bool:
        if not isinstance(obj, dict):
            obj = {}
        return all(matcher(obj if name is None else obj.get(name, _MISSING)) for name, matcher in fields)

    return match


def _body(matcher: Callable[[Any], bool]) -> Matcher:
    def match(record: _Record) -> bool:
        parsed = record.parsed_body()
        return parsed is not None and matcher(parsed)  # an object pattern needs a JSON-object body

    return match


def _nested(matcher: Callable[[Any], bool]) -> Matcher:
    def match(value: Any) -> bool:
        if isinstance(value, list):  # an array of objects matches when one element does
            return any(matcher(v) for v in value if isinstance(v, dict))
        return matcher(value if isinstance(value, dict) else {})

    return match


def _leaf(name: str, rules: list[Any]) -> Matcher:
    matchers = [_rule(name, rule) for rule in rules]

    def match(value: Any) -> bool:
        if isinstance(value, dict) or value == []:
            value = _MISSING  # only leaf values exist for matching, as in EventBridge
        values = value if isinstance(value, list) else [value]
        return any(m(v) for m in matchers for v in values)

    return match


def _rule(name: str, rule: Any) -> Matcher:
    if rule is None or isinstance(rule, str | int | float):
        return _exact(rule)
    if not isinstance(rule, dict) or len(rule) != 1:
        raise _Invalid(f"field {name!r}: a value must be a string, number, null or one-key operator object")
    op, arg = next(iter(rule.items()))
    if op == "exists":
        if not isinstance(arg, bool):
            raise _Invalid(f'field {name!r}: "exists" takes true or false')
        return (lambda v: v is not _MISSING) if arg else (lambda v: v is _MISSING)
    if op == "numeric":
        return _numeric(name, arg)
    if op == "anything-but":
        return _anything_but(name, arg)
    if op in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        return _string_rule(name, op, arg)
    raise _Invalid(f"field {name!r}: unknown operator {op!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _exact(expected: Any) -> Matcher:
    if isinstance(expected, bool) or expected is None:
        return lambda v: v is expected
    if _is_number(expected):
        return lambda v: _is_number(v) and v == expected
    return lambda v: isinstance(v, str) and v == expected


def _string_rule(name: str, op: str, arg: Any) -> Matcher:
    if op in ("prefix", "suffix") and isinstance(arg, dict) and list(arg) == ["equals-ignore-case"]:
        folded = arg["equals-ignore-case"]
        if not isinstance(folded, str):
            raise _Invalid(f'field {name!r}: "{op}" with "equals-ignore-case" takes a string')
        folded = folded.casefold()
        if op == "prefix":
            return lambda v: isinstance(v, str) and v.casefold().startswith(folded)
        return lambda v: isinstance(v, str) and v.casefold().endswith(folded)
    if not isinstance(arg, str):
        raise _Invalid(f'field {name!r}: "{op}" takes a string, got {json.dumps(arg)}')
    if op == "prefix":
        return lambda v: isinstance(v, str) and v.startswith(arg)
    if op == "suffix":
        return lambda v: isinstance(v, str) and v.endswith(arg)
    if op == "equals-ignore-case":
        folded = arg.casefold()
        return lambda v: isinstance(v, str) and v.casefold() == folded
    regex = _wildcard_regex(name, arg)
    return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None


def _wildcard_regex(name: str, arg: str) -> re.Pattern[str]:
    if "**" in arg:
        raise _Invalid(f'field {name!r}: "wildcard" may not have consecutive *')
    parts, literal, i = [], [], 0
    while i < len(arg):
        char = arg[i]
        if char == "\\" and i + 1 < len(arg) and arg[i + 1] in "*\\":
            literal.append(arg[i + 1])
            i += 2
            continue
        if char == "*":
            parts.append(re.escape("".join(literal)))
            parts.append(".*")
            literal = []
        else:
            literal.append(char)
        i += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


def _numeric(name: str, arg: Any) -> Matcher:
    bad = _Invalid(
        f'field {name!r}: "numeric" takes ["op", number] or a range like [">", 0, "<=", 5] '
        f"(ops {', '.join(_NUMERIC_OPS)}), got {json.dumps(arg)}"
    )
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise bad
    tests: list[tuple[Callable[[float, float], bool], float]] = []
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS or not _is_number(bound):
            raise bad
        tests.append((_NUMERIC_OPS[op], bound))
    if len(arg) == 4 and not (arg[0] in (">", ">=") and arg[2] in ("<", "<=") and arg[1] <= arg[3]):
        raise bad
    return lambda v: _is_number(v) and all(test(v, bound) for test, bound in tests)


def _anything_but(name: str, arg: Any) -> Matcher:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            raise _Invalid(
                f'field {name!r}: "anything-but" takes a value, a list of values, or one of '
                f"prefix, suffix, equals-ignore-case, wildcard; got {json.dumps(arg)}"
            )
        op, inner = next(iter(arg.items()))
        values = inner if isinstance(inner, list) and op in ("equals-ignore-case", "wildcard") else [inner]
        excluded = [_string_rule(name, op, v) for v in values]
        return lambda v: isinstance(v, str) and not any(m(v) for m in excluded)
    values = arg if isinstance(arg, list) else [arg]
    if not values or not all(v is None or isinstance(v, str | int | float) for v in values):
        raise _Invalid(f'field {name!r}: "anything-but" takes strings or numbers, got {json.dumps(arg)}')
    excluded_exact = [_exact(v) for v in values]
    return lambda v: v is not _MISSING and not any(m(v) for m in excluded_exact)


class FilterMessages:
    """Pipeline step: a message no pattern matches is settled as "filtered", unhandled.

    Put it after the steps that decrypt or fetch the body, so patterns see the real body.
    """

    def __init__(self, patterns: Sequence[str], record: Callable[[Message], Mapping[str, Any]]):
        self._matches = compile_filters(patterns)
        self._record = record  # e.g. RecordBuilder(queue_url, region).record

    def before(self, message: Message) -> Message:
        if not self._matches(self._record(message)):
            raise Skip("filtered", "no filter pattern matched")
        return message
