"""The worker's hot calls over `poller.sqswire` read exactly as botocore's client methods read:
the same messages and attributes (binary values as bytes), the same batch failures, the same
errors (codes, transient or not), on moto, LocalStack and fauxqs (`make test-servers`)."""

from __future__ import annotations

import socket
from typing import Any

import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from poller.configload import build_config
from poller.errors import SqsError
from poller.sqs import Sqs, make_client, worker_client
from poller.sqswire import Wire

pytestmark = pytest.mark.servers

ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "héllo"},
    "count": {"DataType": "Number", "StringValue": "42"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "kind": {"DataType": "String.custom", "StringValue": "x"},
}


def clients(local_sqs: Any, url: str) -> tuple[Sqs, Sqs]:
    """(through botocore's methods, through the wire): the worker's client, made as it is made."""
    config = build_config(
        {
            "queue": {"url": url, "dlq_url": url + "-dlq", "endpoint_url": local_sqs.endpoint_url},
            "handler": {"target": "tests.sample_handlers:noop"},
        },
        {},
    )
    client = worker_client(config)
    wire = Sqs(client, wire=True)
    assert wire._hot is not client, "the worker's client is one the wire can mirror"
    plain = make_client(url, endpoint_url=local_sqs.endpoint_url, attempts=1, validate=False, lean=True)
    return Sqs(plain), wire


def receive_some(sqs: Sqs, url: str, want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(10):
        got += sqs.receive(url, 10, 1, 0 if len(got) + 10 < want else 30)
        if len(got) >= want:
            break
    return got


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a message is, leaving out what differs between two receives of it."""
    out = []
    for m in messages:
        attrs = {k: v for k, v in m.get("Attributes", {}).items() if not k.startswith("Approximate")}
        rest = {k: v for k, v in m.items() if k not in ("ReceiptHandle", "Attributes")}
        out.append({**rest, "Attributes": attrs})
    return sorted(out, key=lambda m: m["MessageId"])


def test_a_receive_reads_as_the_client_reads_it(local_sqs, sqs, make_queues):
    # GIVEN a message with every kind of message attribute
    url, _ = make_queues()
    sqs.send_message(QueueUrl=url, MessageBody='{"a": "ü"}', MessageAttributes=ATTRIBUTES)
    plain, wire = clients(local_sqs, url)
    # WHEN both receive it (the first gives it back at once)
    [by_client] = receive_some(plain, url, 1)
    plain.change_visibility_batch(url, [("0", by_client["ReceiptHandle"], 0)])
    [by_wire] = receive_some(wire, url, 1)
    # THEN they read alike: body, ids, checksums, system attributes, binary values as bytes
    assert comparable([by_wire]) == comparable([by_client])
    assert by_wire["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xfe\xff"
    assert by_wire["Body"] == '{"a": "ü"}'
    assert int(by_wire["Attributes"]["ApproximateReceiveCount"]) == 2


def test_batch_deletes_and_visibility_changes_report_failures_as_the_client_does(local_sqs, sqs, make_queues):
    # GIVEN two received messages
    url, _ = make_queues()
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    plain, wire = clients(local_sqs, url)
    got = receive_some(wire, url, 2)
    assert len(got) == 2
    # WHEN the wire changes one's visibility beside a receipt SQS never issued, then deletes
    # both beside that receipt
    bogus = "AQEBnotareceipt" + "x" * 40
    changes = [("0", got[0]["ReceiptHandle"], 60), ("1", bogus, 60)]
    deletes = [("0", got[0]["ReceiptHandle"]), ("1", got[1]["ReceiptHandle"]), ("2", bogus)]
    changed, deleted = wire.change_visibility_batch(url, changes), wire.delete_batch(url, deletes)
    # THEN the visibility change failed for the bogus receipt only, marked as a receipt SQS
    # does not know; the deletes of the real ones succeeded; and the client reports the bogus
    # delete as the wire did (a failure on moto and LocalStack, a success on fauxqs)
    assert [(f.id, f.receipt_invalid) for f in changed] == [("1", True)]
    assert [f.id for f in deleted] in (["2"], [])
    assert plain.delete_batch(url, [("2", bogus)]) == deleted
    assert plain.receive(url, 10, 1) == []  # both deleted


def test_errors_read_as_the_client_raises_them(local_sqs, make_queues):
    # GIVEN a queue that does not exist, and an endpoint nothing listens on
    url, _ = make_queues()
    plain, wire = clients(local_sqs, url)
    missing = url + "-gone"
    # WHEN each receives from the missing queue
    errors = []
    for sqs in (plain, wire):
        with pytest.raises(SqsError) as raised:
            sqs.receive(missing, 1, 0)
        errors.append(raised.value)
    # THEN the errors are the same: code, message, not transient
    assert [(e.code, str(e), e.transient) for e in errors[1:]] == [(errors[0].code, str(errors[0]), False)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = build_config(
        {
            "queue": {"url": url, "dlq_url": url + "-dlq", "endpoint_url": f"http://127.0.0.1:{port}"},
            "handler": {"target": "tests.sample_handlers:noop"},
        },
        {},
    )
    with pytest.raises(SqsError) as raised:
        Sqs(worker_client(config), wire=True).receive(url, 1, 0)
    assert raised.value.transient and raised.value.code == "EndpointConnectionError"


def test_a_client_the_wire_cannot_mirror_is_used_as_it_is(local_sqs):
    # GIVEN clients the wire cannot speak for: unsigned requests, another service
    session = botocore.session.get_session()
    endpoint = {"region_name": "us-east-1", "endpoint_url": local_sqs.endpoint_url}
    unsigned = session.create_client("sqs", config=Config(signature_version=UNSIGNED), **endpoint)
    s3 = session.create_client("s3", **endpoint)
    # THEN there is no wire for them, and their calls go through botocore's methods
    assert Wire.of(unsigned) is None and Wire.of(s3) is None
    assert Wire.of(session.create_client("sqs", **endpoint)) is not None  # (the control case)
