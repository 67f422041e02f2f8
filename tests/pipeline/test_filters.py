"""Filters: Lambda's filter-criteria patterns, checked against the examples in Lambda's docs.

The records are built the way the lambda style builds them (poller.handlers.lambda_event), so a
pattern sees exactly the record shape a Lambda filter sees.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.errors import ConfigError
from poller.handlers.lambda_event import RecordBuilder
from poller.message import Skip
from poller.pipeline.filters import FilterMessages, FilterPatternError, compile_filters, compile_pattern
from tests.messages import message

URL = "https://sqs.us-west-2.amazonaws.com/123456789012/my-queue"
RECORDS = RecordBuilder(URL, "us-west-2")


def record(body: Any, **fields: Any) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return RECORDS.record(message(text, queue_url=URL, **fields))


def matches(pattern: dict[str, Any] | str, body: Any, **fields: Any) -> bool:
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    return compile_pattern(text)(record(body, **fields))


# Lambda's SQS filtering page: the queue holds {"RecordNumber", "TimeStamp", "RequestCode"}.
DOC_BODY = {"RecordNumber": 1234, "TimeStamp": "yyyy-mm-ddThh:mm:ss", "RequestCode": "AAAA"}


def test_sqs_doc_example_request_code() -> None:
    pattern = '{ "body" : { "RequestCode" : [ "BBBB" ] } }'
    assert not matches(pattern, DOC_BODY)
    assert matches(pattern, {**DOC_BODY, "RequestCode": "BBBB"})


def test_sqs_doc_example_record_number_above_9999() -> None:
    pattern = '{ "body" : { "RecordNumber" : [ { "numeric": [ ">", 9999 ] } ] } }'
    assert not matches(pattern, DOC_BODY)
    assert matches(pattern, {**DOC_BODY, "RecordNumber": 10000})
    assert not matches(pattern, {**DOC_BODY, "RecordNumber": "10000"})  # a string is not a number


# Lambda's "Filter rule syntax" table, one row each: (pattern, matching bodies, other bodies).
SYNTAX_TABLE = {
    "null": ({"UserID": [None]}, [{"UserID": None}], [{"UserID": "u1"}, {}]),
    "empty": ({"LastName": [""]}, [{"LastName": ""}], [{"LastName": "Doe"}, {}]),
    "equals": ({"Name": ["Alice"]}, [{"Name": "Alice"}], [{"Name": "alice"}, {"Name": "Bob"}]),
    "equals-ignore-case": (
        {"Name": [{"equals-ignore-case": "alice"}]},
        [{"Name": "ALICE"}, {"Name": "Alice"}],
        [{"Name": "Alicia"}],
    ),
    "and": (
        {"Location": ["New York"], "Day": ["Monday"]},
        [{"Location": "New York", "Day": "Monday"}],
        [{"Location": "New York", "Day": "Tuesday"}, {"Location": "New York"}],
    ),
    "or": (
        {"PaymentType": ["Credit", "Debit"]},
        [{"PaymentType": "Credit"}, {"PaymentType": "Debit"}],
        [{"PaymentType": "Cash"}],
    ),
    "or-multiple-fields": (
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        [{"Location": "New York", "Day": "Sunday"}, {"Location": "Paris", "Day": "Monday"}],
        [{"Location": "Paris", "Day": "Sunday"}],
    ),
    "not": (
        {"Weather": [{"anything-but": ["Raining"]}]},
        [{"Weather": "Sunny"}, {"Weather": 3}],
        [{"Weather": "Raining"}, {}],
    ),
    "numeric-equals": (
        {"Price": [{"numeric": ["=", 100]}]},
        [{"Price": 100}, {"Price": 100.0}],
        [{"Price": 101}],
    ),
    "numeric-range": (
        {"Price": [{"numeric": [">", 10, "<=", 20]}]},
        [{"Price": 20}, {"Price": 10.5}],
        [{"Price": 10}, {"Price": 21}, {"Price": "15"}],
    ),
    "exists": ({"ProductName": [{"exists": True}]}, [{"ProductName": "x"}, {"ProductName": None}], [{}]),
    "does-not-exist": ({"ProductName": [{"exists": False}]}, [{}, {"Other": 1}], [{"ProductName": "x"}]),
    "begins-with": ({"Region": [{"prefix": "us-"}]}, [{"Region": "us-west-2"}], [{"Region": "eu-west-1"}]),
    "ends-with": ({"FileName": [{"suffix": ".png"}]}, [{"FileName": "cat.png"}], [{"FileName": "cat.jpg"}]),
}


@pytest.mark.parametrize("row", SYNTAX_TABLE, ids=list(SYNTAX_TABLE))
def test_filter_rule_syntax_table(row: str) -> None:
    # GIVEN a rule of Lambda's syntax table applied to the message body
    rule, yes, no = SYNTAX_TABLE[row]
    pattern = {"body": rule}
    # THEN the bodies it describes match, the others do not
    assert [matches(pattern, b) for b in yes] == [True] * len(yes)
    assert [matches(pattern, b) for b in no] == [False] * len(no)


def test_nested_fields_and_arrays_in_the_body() -> None:
    pattern = {"body": {"order": {"items": {"sku": [{"prefix": "BOOK-"}]}}, "tags": ["rush"]}}
    body = {"order": {"items": [{"sku": "PEN-1"}, {"sku": "BOOK-42"}]}, "tags": ["gift", "rush"]}
    assert matches(pattern, body)
    assert not matches(pattern, {**body, "tags": ["gift"]})
    assert not matches(pattern, {"order": {"items": [{"sku": "PEN-1"}]}, "tags": ["rush"]})


def test_more_string_operators() -> None:
    assert matches({"body": {"f": [{"wildcard": "img/*.png"}]}}, {"f": "img/a/b.png"})
    assert not matches({"body": {"f": [{"wildcard": "img/*.png"}]}}, {"f": "doc/a.png"})
    assert matches({"body": {"f": [{"wildcard": "a\\*b"}]}}, {"f": "a*b"})
    assert not matches({"body": {"f": [{"wildcard": "a\\*b"}]}}, {"f": "axxb"})
    assert matches({"body": {"r": [{"prefix": {"equals-ignore-case": "US-"}}]}}, {"r": "us-east-1"})
    assert matches({"body": {"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}, {"f": "a.png"})
    assert not matches({"body": {"r": [{"anything-but": {"prefix": "us-"}}]}}, {"r": "us-east-1"})
    assert matches({"body": {"r": [{"anything-but": {"prefix": "us-"}}]}}, {"r": "eu-west-1"})
    assert not matches({"body": {"n": [{"anything-but": [1, 2]}]}}, {"n": 2})
    assert matches({"body": {"b": [True]}}, {"b": True}) and not matches({"body": {"b": [True]}}, {"b": 1})


def test_plain_string_bodies() -> None:
    # GIVEN bodies that are not JSON objects
    # THEN a list pattern on body compares the raw body; an object pattern never matches it
    assert matches({"body": [{"prefix": "Result: "}]}, "Result: ok")
    assert not matches({"body": [{"prefix": "Result: "}]}, "Error: no")
    assert not matches({"body": {"RequestCode": [{"exists": False}]}}, "not json")
    assert not matches({"body": {"RequestCode": ["BBBB"]}}, "[1, 2]")


def test_attributes_and_message_attributes_in_lambdas_record_shape() -> None:
    fields = {
        "group_id": "acct-7",
        "attributes": {"MessageGroupId": "acct-7", "SenderId": "AIDA1"},
        "message_attributes": {
            "kind": {"DataType": "String", "StringValue": "order"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00"},
        },
    }
    assert matches({"attributes": {"MessageGroupId": [{"prefix": "acct-"}]}}, {}, **fields)
    assert matches({"messageAttributes": {"kind": {"stringValue": ["order"]}}}, {}, **fields)
    assert matches({"messageAttributes": {"blob": {"dataType": ["Binary"]}}}, {}, **fields)
    assert not matches({"messageAttributes": {"kind": {"stringValue": ["refund"]}}}, {}, **fields)
    assert not matches({"messageAttributes": {"missing": {"stringValue": [{"exists": True}]}}}, {}, **fields)
    both = {"body": {"RequestCode": ["AAAA"]}, "messageAttributes": {"kind": {"stringValue": ["order"]}}}
    assert matches(both, DOC_BODY, **fields)
    assert not matches(both, {**DOC_BODY, "RequestCode": "BBBB"}, **fields)


def test_or_across_body_and_message_attributes() -> None:
    # GIVEN "$or" at the record level: a body rule or a message-attribute rule
    pattern = {
        "$or": [
            {"body": {"RequestCode": ["BBBB"]}},
            {"messageAttributes": {"kind": {"stringValue": ["urgent"]}}},
        ]
    }
    urgent = {"message_attributes": {"kind": {"DataType": "String", "StringValue": "urgent"}}}
    # THEN either side lets a record through
    assert matches(pattern, {**DOC_BODY, "RequestCode": "BBBB"})
    assert matches(pattern, DOC_BODY, **urgent)
    assert matches(pattern, "not json", **urgent)
    assert not matches(pattern, DOC_BODY)


def test_body_fields_named_like_operators_are_plain_fields() -> None:
    assert matches({"body": {"$type": ["order"]}}, {"$type": "order"})
    assert not matches({"body": {"$type": ["order"]}}, {"type": "order"})


def test_patterns_are_ored() -> None:
    # GIVEN two filters, as an event source mapping's Filters list
    match = compile_filters(['{"body": {"RequestCode": ["AAAA"]}}', '{"body": {"RecordNumber": [5]}}'])
    # THEN a record passes when either matches
    assert match(record(DOC_BODY))
    assert match(record({"RequestCode": "CCCC", "RecordNumber": 5}))
    assert not match(record({"RequestCode": "CCCC", "RecordNumber": 6}))


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ('{"body": {"RequestCode": ["BBBB"]', "not valid JSON"),
        ('["BBBB"]', "non-empty JSON object"),
        ('{"body": {"RequestCode": [{"starts-with": "B"}]}}', "unknown operator 'starts-with'"),
        ('{"body": {"RequestCode": []}}', "empty list"),
        ('{"body": {"RequestCode": "BBBB"}}', "must be a list of values or an object"),
        ('{"Body": {"RequestCode": ["BBBB"]}}', "unknown field 'Body'"),
        ('{"body": {"n": [{"numeric": [">", "9"]}]}}', '"numeric" takes'),
        ('{"body": {"n": [{"numeric": ["<", 5, ">", 1]}]}}', '"numeric" takes'),
        ('{"body": {"n": [{"exists": "yes"}]}}', '"exists" takes true or false'),
        ('{"body": {"n": [{"prefix": 5}]}}', '"prefix" takes a string'),
        ('{"body": {"n": [{"anything-but": {"numeric": [">", 1]}}]}}', '"anything-but" takes'),
        ('{"$or": [{"body": {"a": ["x"]}}]}', '"$or" takes a list of at least two'),
    ],
)
def test_invalid_patterns_raise_a_config_error_naming_the_pattern(pattern: str, says: str) -> None:
    # WHEN an invalid pattern is compiled (config validation)
    with pytest.raises(FilterPatternError) as raised:
        compile_filters(['{"body": {"ok": ["yes"]}}', pattern])
    # THEN the error names the key, the pattern and what is wrong; it exits as a config error
    text = str(raised.value)
    assert text.startswith("handler.filters[1] = ") and pattern in text and says in text
    assert isinstance(raised.value, ConfigError) and raised.value.exit_code == 2


def test_filter_step_settles_unmatched_messages_as_filtered() -> None:
    # GIVEN the pipeline step with the doc's RequestCode filter
    step = FilterMessages(['{"body": {"RequestCode": ["BBBB"]}}'], RECORDS.record)
    wanted = message(json.dumps({**DOC_BODY, "RequestCode": "BBBB"}), queue_url=URL)
    other = message(json.dumps(DOC_BODY), queue_url=URL)

    # THEN a matching message goes on to the handler; the other is skipped as "filtered"
    assert step.before(wanted) is wanted
    with pytest.raises(Skip) as skipped:
        step.before(other)
    assert skipped.value.outcome == "filtered"
