"""Idempotency against DynamoDB (moto): a completed message never reaches the handler twice."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
import structlog
from moto import mock_aws

from poller import Message, Poison, Retry
from poller.errors import ConfigError
from poller.pipeline.idempotency import (
    IdempotencyError,
    IdempotencyStore,
    build_idempotency_store,
    create_table,
)
from tests.configs import section
from tests.messages import message

TABLE = "sqs-poller-idempotency"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingHandler:
    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    def __call__(self, message: Message) -> None:
        self.calls.append(message.message_id)
        if self.error is not None:
            raise self.error


def make_message(message_id: str = "m-1", body: str = '{"request_id": "r-1"}') -> Message:
    return message(body, message_id=message_id)


@pytest.fixture
def ddb(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(ddb, clock) -> IdempotencyStore:
    return IdempotencyStore(TABLE, in_progress_timeout=300, ttl_seconds=3600, clock=clock)


def record(ddb, key: str) -> dict | None:
    item = ddb.get_item(TableName=TABLE, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
    return {k: next(iter(v.values())) for k, v in item.items()} if item else None


def test_first_delivery_runs_and_records_completion(ddb, store, clock):
    # GIVEN a new message
    handler = CountingHandler()
    # WHEN run once
    ran = store.run_once(make_message(), handler)
    # THEN the handler ran and the key is completed with a TTL of ttl_seconds
    assert ran is True and handler.calls == ["m-1"]
    item = record(ddb, "m-1")
    assert item["status"] == "completed"
    assert int(item["expires_at"]) == int(clock.now + 3600)
    assert "locked_until" not in item


def test_duplicate_delivery_of_a_completed_message_never_reaches_the_handler(store):
    # GIVEN a message that completed
    handler = CountingHandler()
    store.run_once(make_message(), handler)
    # WHEN SQS delivers it again (and again)
    with structlog.testing.capture_logs() as logs:
        second = store.run_once(make_message(), handler)
        third = store.run_once(make_message(), handler)
    # THEN the handler ran once; the duplicates return normally so the daemon deletes them
    assert handler.calls == ["m-1"]
    assert second is False and third is False
    assert [e["event"] for e in logs] == ["idempotency_duplicate_skipped"] * 2
    assert logs[0]["message_id"] == "m-1"


def test_key_field_catches_producer_duplicates(ddb, clock):
    # GIVEN a store keyed by the body's request_id
    store = IdempotencyStore(TABLE, key_field="request_id", clock=clock)
    handler = CountingHandler()
    # WHEN two distinct SQS messages carry the same request id
    store.run_once(make_message("m-1", '{"request_id": "r-9"}'), handler)
    store.run_once(make_message("m-2", '{"request_id": "r-9", "retry": true}'), handler)
    store.run_once(make_message("m-3", '{"request_id": "r-10"}'), handler)
    # THEN one ran per request id
    assert handler.calls == ["m-1", "m-3"]
    assert record(ddb, "r-9")["message_id"] == "m-1"


def test_nested_and_integer_key_fields(ddb, clock):
    # GIVEN a dotted key field WHEN the value is an integer THEN it is used as a string
    store = IdempotencyStore(TABLE, key_field="order.id", clock=clock)
    assert store.key_for(make_message(body='{"order": {"id": 42}}')) == "42"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"other": "x"}', "idempotency key field 'request_id' is missing from the body"),
        ('["request_id"]', "idempotency key field 'request_id' is missing from the body"),
        ("not json: SECRET", "body is not JSON; the idempotency key field 'request_id' needs it"),
        ('{"request_id": true}', "idempotency key field 'request_id' must be a non-empty string"),
        ('{"request_id": ""}', "idempotency key field 'request_id' must be a non-empty string"),
        (
            '{"request_id": {"a": 1}}',
            "idempotency key field 'request_id' must be a non-empty string",
        ),
        (
            '{"request_id": "' + "x" * 1100 + '"}',
            "idempotency key field 'request_id' is over 1024 bytes",
        ),
    ],
)
def test_bad_key_field_is_poison_naming_the_field_only(ddb, body, reason):
    # GIVEN a body without a usable key
    store = IdempotencyStore(TABLE, key_field="request_id")
    handler = CountingHandler()
    # WHEN run THEN poison with a reason naming the field, and the handler never ran
    with pytest.raises(Poison) as info:
        store.run_once(make_message(body=body), handler)
    assert info.value.reason == reason
    assert "SECRET" not in info.value.reason
    assert handler.calls == []


def test_in_progress_elsewhere_retries_after_the_lock(ddb, store, clock):
    # GIVEN another worker claimed the key 100 s ago (lock 300 s)
    other = IdempotencyStore(TABLE, in_progress_timeout=300, clock=clock)
    blocked = threading.Event()

    def slow(message):
        clock.now += 100
        # WHEN the duplicate arrives while the first is still running
        with pytest.raises(Retry) as info:
            store.run_once(make_message(), handler)
        blocked.set()
        # THEN it is retried once the other's lock would run out, without running
        assert info.value.delay == 200

    handler = CountingHandler()
    other.run_once(make_message(), slow)
    assert blocked.is_set()
    assert handler.calls == []
    # AND after the first completes, the retry is a skipped duplicate
    assert store.run_once(make_message(), handler) is False


def test_expired_in_progress_record_is_taken_over(ddb, store, clock):
    # GIVEN a worker died holding the key (in progress, never completed)
    ddb.put_item(
        TableName=TABLE,
        Item={
            "id": {"S": "m-1"},
            "status": {"S": "in_progress"},
            "owner": {"S": "dead-worker"},
            "locked_until": {"N": str(clock.now + 300)},
            "expires_at": {"N": str(int(clock.now + 3600))},
        },
    )
    handler = CountingHandler()
    # WHEN the message comes back before the lock expires THEN Retry
    with pytest.raises(Retry):
        store.run_once(make_message(), handler)
    # WHEN it comes back after handler.timeout THEN it is taken over and runs
    clock.now += 301
    assert store.run_once(make_message(), handler) is True
    assert handler.calls == ["m-1"]
    assert record(ddb, "m-1")["status"] == "completed"


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), Retry(delay=5), Poison("bad input"), KeyboardInterrupt()]
)
def test_failed_handler_releases_the_key_so_the_retry_runs(ddb, store, error):
    # GIVEN a handler that fails the first time
    failing = CountingHandler(error=error)
    # WHEN it raises THEN the same exception propagates and the record is gone
    with pytest.raises(type(error)):
        store.run_once(make_message(), failing)
    assert record(ddb, "m-1") is None
    # AND the redelivery (or a DLQ replay) runs the handler again
    handler = CountingHandler()
    assert store.run_once(make_message(), handler) is True
    assert handler.calls == ["m-1"]


def test_completed_key_past_its_ttl_runs_again(ddb, store, clock):
    # GIVEN a key that completed over ttl_seconds ago (DynamoDB has not swept it yet)
    handler = CountingHandler()
    store.run_once(make_message(), handler)
    clock.now += 3601
    # WHEN the message arrives again THEN it runs: the key is forgotten
    assert store.run_once(make_message(), handler) is True
    assert handler.calls == ["m-1", "m-1"]


def test_overrunning_worker_does_not_clobber_the_new_owner(ddb, store, clock):
    # GIVEN a handler that overruns its lock while a second worker takes over and completes
    taker = IdempotencyStore(TABLE, in_progress_timeout=300, ttl_seconds=3600, clock=clock)
    second = CountingHandler()

    def overrun(message):
        clock.now += 400
        taker.run_once(make_message(), second)

    # WHEN the first worker finishes
    with structlog.testing.capture_logs() as logs:
        assert store.run_once(make_message(), overrun) is True
    # THEN it notices it lost the lock and the record stays completed by the taker
    assert "idempotency_lock_lost" in [e["event"] for e in logs]
    assert second.calls == ["m-1"]
    assert record(ddb, "m-1")["status"] == "completed"


def test_concurrent_duplicates_run_the_handler_once(ddb):
    # GIVEN eight workers receiving the same message at once
    store = IdempotencyStore(TABLE, in_progress_timeout=300)
    handler_calls = []
    start = threading.Barrier(8)
    outcomes = []

    def slow_handler(message):
        handler_calls.append(message.message_id)
        time.sleep(0.2)

    def worker():
        start.wait()
        try:
            outcomes.append(store.run_once(make_message(), slow_handler))
        except Retry:
            outcomes.append("retry")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # THEN the handler ran once; the others retried or saw a completed duplicate
    assert handler_calls == ["m-1"]
    assert outcomes.count(True) == 1
    assert set(outcomes) <= {True, False, "retry"}


def test_unreachable_table_is_retryable_and_handler_does_not_run(monkeypatch):
    # GIVEN DynamoDB cannot be reached
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = IdempotencyStore(TABLE, region="us-east-1", endpoint_url="http://127.0.0.1:9")
    handler = CountingHandler()
    # WHEN run THEN a plain, retryable error names the failure; the handler did not run
    with pytest.raises(IdempotencyError, match="DynamoDB PutItem failed: EndpointConnectionError"):
        store.run_once(make_message(), handler)
    assert handler.calls == []


def test_missing_table_is_retryable(ddb):
    # GIVEN a table name that does not exist WHEN run THEN IdempotencyError names the code
    store = IdempotencyStore("nope")
    with pytest.raises(IdempotencyError, match="ResourceNotFoundException"):
        store.run_once(make_message(), CountingHandler())


def test_create_table_enables_ttl_and_is_repeatable(ddb):
    # GIVEN the table exists WHEN created again THEN no error, and TTL is on expires_at
    create_table(ddb, TABLE)
    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_config_and_factory(ddb):
    # GIVEN invalid sections THEN errors name the key
    with pytest.raises(ConfigError, match="idempotency.table"):
        section("idempotency", {"enabled": True})
    with pytest.raises(ConfigError, match="idempotency.ttl_seconds"):
        section("idempotency", {"ttl_seconds": 10})
    with pytest.raises(ConfigError, match="idempotency.in_progress_timeout"):
        section("idempotency", {"in_progress_timeout": 50000})
    with pytest.raises(ConfigError, match="idempotency.key_field"):
        section("idempotency", {"key_field": "a..b"})
    with pytest.raises(ConfigError, match="idempotency.tabel"):
        section("idempotency", {"tabel": "x"})
    # AND a disabled section builds nothing; an enabled one defaults the lock to handler.timeout
    assert build_idempotency_store(section("idempotency"), 300) is None
    cfg = section("idempotency", {"enabled": True, "table": TABLE})
    store = build_idempotency_store(cfg, handler_timeout=120, client=ddb)
    assert store.in_progress_timeout == 120 and store.key_field is None
    assert store.run_once(make_message(), CountingHandler()) is True


# --- the daemon end to end ------------------------------------------------------------------


def test_daemon_runs_a_duplicated_request_once(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    import json

    from tests.conftest import queue_total, send_bodies, wait_until, write_config

    # GIVEN the table on the local endpoint, and a request sent twice plus another one
    url, dlq = make_queues()
    table = f"idem-{tmp_path.name[-12:]}"
    create_table(local_sqs.client("dynamodb"), table)
    bodies = [json.dumps({"request_id": r, "n": n}) for n, r in enumerate(["r-1", "r-1", "r-2"])]
    send_bodies(sqs, url, bodies)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"timeout": 5},
        idempotency={
            "enabled": True,
            "table": table,
            "key_field": "request_id",
            "endpoint_url": local_sqs.endpoint_url,
            "region": "us-east-1",
        },
    )
    # WHEN the daemon runs until the queue is empty
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=60)
    # THEN the handler ran once per request id, and nothing was dead-lettered
    handled = [json.loads(r["body"])["request_id"] for r in daemon.handled()]
    assert sorted(handled) == ["r-1", "r-2"]
    assert queue_total(sqs, dlq) == 0
    assert any(r.get("event") == "idempotency_duplicate_skipped" for r in daemon.logs())
    assert daemon.stop() == 0
