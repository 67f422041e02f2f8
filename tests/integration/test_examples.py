"""The create-mailbox example and the legacy stub, alone and as the whole library pipeline
(decrypt -> idempotency -> handler -> legacy HTTP), with KMS and DynamoDB through moto."""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import parse_qs

import boto3
import pytest
import requests
from moto import mock_aws

from examples.legacy_stub import HANG, LegacyStub
from examples.mailbox import SAMPLE_REQUESTS, CreateMailbox, parse_request, to_legacy_form
from poller import Message, Poison, Unavailable
from poller.crypto import DataKeyCache, Decryptor, Encryptor, KmsKeyProvider, LocalKeyring, create_keyring
from poller.handlers.http import ForwardError
from poller.pipeline.idempotency import IdempotencyStore, create_table
from tests.messages import message

GOOD = {
    "username": "alice",
    "domain": "example.com",
    "quota_mb": 2048,
    "display_name": "Alice Liddell",
    "aliases": ["al", "alice.l"],
}


def make_message(body: str, message_id: str = "m-1", attributes: dict | None = None) -> Message:
    return message(body, message_id=message_id, message_attributes=attributes or {})


@pytest.fixture
def stub():
    with LegacyStub() as server:
        yield server


@pytest.fixture
def handler(stub):
    instance = CreateMailbox({"url": f"{stub.url}/mailboxes", "timeout": 2})
    yield instance
    instance.close()


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


# --- the handler -----------------------------------------------------------------------------


def test_valid_request_is_transformed_and_posted_to_the_legacy_system(stub, handler):
    # GIVEN a valid create-mailbox request WHEN handled
    handler.handle(make_message(json.dumps(GOOD)))
    # THEN the legacy system received its own format, with the poller's headers
    [request] = stub.requests_to("/mailboxes")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["X-Sqs-Poller-Message-Id"] == "m-1"
    assert parse_qs(request.body.decode()) == {
        "ACTION": ["CREATE"],
        "MBX_USER": ["alice"],
        "MBX_DOMAIN": ["example.com"],
        "MBX_ADDR": ["alice@example.com"],
        "QUOTA_KB": ["2097152"],
        "DISPLAY": ["Alice Liddell"],
        "ALIASES": ["al@example.com,alice.l@example.com"],
    }


def test_minimal_request_omits_optional_fields():
    form = parse_qs(to_legacy_form(parse_request('{"username":"bo","domain":"a.io","quota_mb":1}')))
    assert set(form) == {"ACTION", "MBX_USER", "MBX_DOMAIN", "MBX_ADDR", "QUOTA_KB"}
    assert form["QUOTA_KB"] == ["1024"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"username": None}, "mailbox request is missing username"),
        ({"quota_mb": None, "domain": None}, "mailbox request is missing domain, quota_mb"),
        ({"username": "Alice"}, "username must be 1-32 of a-z 0-9 . _ - and start with a letter"),
        ({"username": "x" * 33}, "username must be 1-32 of a-z 0-9 . _ - and start with a letter"),
        ({"username": 7}, "username must be 1-32 of a-z 0-9 . _ - and start with a letter"),
        ({"domain": "localhost"}, "domain must be a lower-case DNS name"),
        ({"domain": "EXAMPLE.com"}, "domain must be a lower-case DNS name"),
        ({"quota_mb": 0}, "quota_mb must be an integer within 1..102400"),
        ({"quota_mb": 102401}, "quota_mb must be an integer within 1..102400"),
        ({"quota_mb": "2048"}, "quota_mb must be an integer within 1..102400"),
        ({"quota_mb": True}, "quota_mb must be an integer within 1..102400"),
        ({"quota_mb": 1.5}, "quota_mb must be an integer within 1..102400"),
        ({"display_name": "x" * 65}, "display_name must be printable text of at most 64 characters"),
        ({"display_name": "a\nb"}, "display_name must be printable text of at most 64 characters"),
        ({"aliases": "al"}, "aliases must be a list of at most 10 names"),
        ({"aliases": [f"a{i}" for i in range(11)]}, "aliases must be a list of at most 10 names"),
        ({"aliases": ["Al"]}, "each alias must be 1-32 of a-z 0-9 . _ - and start with a letter"),
        ({"aliases": ["al", "al"]}, "aliases must be distinct and differ from username"),
        ({"aliases": ["alice"]}, "aliases must be distinct and differ from username"),
        ({"password": "hunter2"}, "mailbox request has unknown fields: password"),
    ],
)
def test_bad_input_is_poison_with_a_clear_reason_and_no_value(stub, handler, change, reason):
    # GIVEN a request with one bad field
    payload = {**GOOD, **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    # WHEN handled THEN poison names the field and the rule, and nothing was sent
    with pytest.raises(Poison) as info:
        handler.handle(make_message(json.dumps(payload)))
    assert info.value.reason == reason
    assert "hunter2" not in info.value.reason and "Alice" not in info.value.reason
    assert stub.requests == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"alice"', ""])
def test_non_object_bodies_are_poison(handler, body):
    with pytest.raises(Poison, match="mailbox request"):
        handler.handle(make_message(body))


def test_legacy_outcomes_follow_the_forward_policy(stub, handler):
    # GIVEN the legacy system answers 409, then 503 with Retry-After, then 500
    stub.respond("/mailboxes", 409)
    stub.respond("/mailboxes", 503, headers={"Retry-After": "30"})
    stub.respond("/mailboxes", 500)
    message = make_message(json.dumps(GOOD))
    # WHEN handled three times THEN poison with the status, unavailable for 30 s, a backoff error
    with pytest.raises(Poison, match=r"^HTTP 409 from http://127\.0\.0\.1:\d+/mailboxes$"):
        handler.handle(message)
    with pytest.raises(Unavailable) as info:
        handler.handle(message)
    assert info.value.retry_after == 30
    with pytest.raises(ForwardError, match="HTTP 500"):
        handler.handle(message)
    # AND the fourth succeeds
    handler.handle(message)
    assert len(stub.requests) == 4


def test_sample_requests_match_their_expected_outcome(stub, handler):
    # GIVEN the demo's sample traffic WHEN each is handled THEN it does what it says
    for index, (payload, expected) in enumerate(SAMPLE_REQUESTS):
        message = make_message(json.dumps(payload), message_id=f"s-{index}")
        if expected == "poison":
            with pytest.raises(Poison):
                handler.handle(message)
        else:
            handler.handle(message)
    created = sum(1 for _, expected in SAMPLE_REQUESTS if expected == "created")
    assert len(stub.requests) == created


# --- the whole library pipeline --------------------------------------------------------------


def pipeline(decryptor: Decryptor, store: IdempotencyStore, handler: CreateMailbox, message: Message) -> bool:
    """What the worker does per message: decrypt, then run once, then the handler."""
    return store.run_once(decryptor.decrypt_message(message), handler.handle)


def test_encrypted_request_with_duplicate_delivery_reaches_legacy_once(aws, stub, handler):
    # GIVEN a KMS key, the idempotency table, and an API that encrypts create-mailbox requests
    kms = boto3.client("kms", region_name="us-east-1")
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, "idem")
    producer = Encryptor(KmsKeyProvider(key_arn, region="us-east-1"), DataKeyCache())
    consumer = KmsKeyProvider(region="us-east-1")
    decryptor = Decryptor(consumer, DataKeyCache(), require_encryption=True)
    store = IdempotencyStore("idem", client=ddb)
    body, attrs = producer.encrypt(json.dumps(GOOD))
    assert "alice" not in body
    message = make_message(body, attributes=attrs)
    # WHEN SQS delivers it twice (the second after the first completed)
    first = pipeline(decryptor, store, handler, message)
    second = pipeline(decryptor, store, handler, message)
    # THEN the legacy system saw one request, with the decrypted, transformed payload
    assert (first, second) == (True, False)
    [request] = stub.requests
    assert parse_qs(request.body.decode())["MBX_ADDR"] == ["alice@example.com"]
    # AND KMS was asked once per side
    assert consumer.calls["decrypt"] == 1


def test_legacy_failure_then_redelivery_runs_again(aws, stub, handler, tmp_path):
    # GIVEN a legacy system that fails once with a 500
    create_keyring(tmp_path / "k.json")
    ring = LocalKeyring(tmp_path / "k.json")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, "idem")
    store = IdempotencyStore("idem", client=ddb)
    stub.fail_first("/mailboxes", 1, status=500)
    body, attrs = Encryptor(ring).encrypt(json.dumps(GOOD))
    message = make_message(body, attributes=attrs)
    decryptor = Decryptor(ring)
    # WHEN delivered, failing, then redelivered
    with pytest.raises(ForwardError):
        pipeline(decryptor, store, handler, message)
    assert pipeline(decryptor, store, handler, message) is True
    # THEN the retry reached the legacy system (the failed attempt did not block it)
    assert len(stub.requests) == 2


def test_tampered_encrypted_request_never_reaches_handler_or_legacy(aws, stub, handler, tmp_path):
    # GIVEN an encrypted request altered in transit
    create_keyring(tmp_path / "k.json")
    ring = LocalKeyring(tmp_path / "k.json")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, "idem")
    body, attrs = Encryptor(ring).encrypt(json.dumps(GOOD))
    raw = bytearray(base64.b64decode(body))
    raw[-20] ^= 0x40
    message = make_message(base64.b64encode(bytes(raw)).decode(), attributes=attrs)
    # WHEN processed THEN poison with the authentication reason, nothing sent, nothing recorded
    with pytest.raises(Poison) as info:
        pipeline(Decryptor(ring), IdempotencyStore("idem", client=ddb), handler, message)
    assert info.value.reason == "authentication failed: body tampered or wrong key"
    assert "alice" not in info.value.reason
    assert stub.requests == []
    assert ddb.scan(TableName="idem")["Count"] == 0


# --- the legacy stub itself ------------------------------------------------------------------


def test_stub_default_answer_and_recording(stub):
    response = requests.post(f"{stub.url}/anything", data=b"x", timeout=5)
    assert response.status_code == 201 and response.json() == {"ok": True, "id": 1}
    assert stub.requests[0].body == b"x" and stub.requests[0].method == "POST"


def test_stub_scripts_are_per_path_and_used_once(stub):
    stub.respond("/a", 418, body="teapot")
    assert requests.post(f"{stub.url}/b", timeout=5).status_code == 201
    assert requests.post(f"{stub.url}/a", timeout=5).text == "teapot"
    assert requests.post(f"{stub.url}/a", timeout=5).status_code == 201


def test_stub_hang_is_released_by_stop():
    # GIVEN a hung request in flight
    stub = LegacyStub().start()
    stub.respond("/slow", HANG)
    errors = []

    def call():
        try:
            requests.post(f"{stub.url}/slow", timeout=30)
        except requests.RequestException as exc:
            errors.append(type(exc).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.2)
    # WHEN the stub stops THEN it does so promptly and the client sees the connection end
    started = time.monotonic()
    stub.stop()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert not thread.is_alive() and errors


def test_producer_sends_encrypted_requests_the_consumer_decrypts(aws, tmp_path):
    # GIVEN a queue and a keyring shared by producer and consumer
    from examples.send_mailbox import main as send_main

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="mailbox")["QueueUrl"]
    create_keyring(tmp_path / "k.json")
    # WHEN the example producer sends the sample requests
    assert send_main([url, "--keyring", str(tmp_path / "k.json"), "--region", "us-east-1"]) == 0
    # THEN every body on the queue is ciphertext that the consumer turns back into the request
    decryptor = Decryptor(LocalKeyring(tmp_path / "k.json"), require_encryption=True)
    received = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    ).get("Messages"):
        for raw in batch:
            assert "username" not in raw["Body"]
            message = Message.from_sqs(raw, url)
            received.append(json.loads(decryptor.decrypt_message(message).body))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"])
    assert sorted(r["username"] for r in received) == sorted(p["username"] for p, _ in SAMPLE_REQUESTS)
