"""The real daemon (`python -m poller run`) with S3 payloads and tracing: AWS's extended client
on the other side, poison and replay of a large message, a missing object, and spans exported
over OTLP to a collector in the test joined with the daemon's log lines.

These need the [payload] and [tracing] config sections wired into the worker and `send`; until
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.pipeline.payload import SIZE_ATTRIBUTE, describe_pointer
from tests.conftest import queue_total, receive_all, wait_until, write_config
from tests.integration.test_daemon import run_cli
from tests.pipeline.test_payload import TWO_MIB, big_body, peer

# Listed in `make test-servers` so its summary says why these stay on moto.
pytestmark = [pytest.mark.servers, pytest.mark.moto_only("needs S3 on the same endpoint as SQS (moto's)")]


@pytest.fixture
def s3(local_sqs: Any) -> Any:
    return local_sqs.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"payloads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_config(tmp_path: Path, local_sqs: Any, url: str, dlq: str, bucket: str, target: str) -> Path:
    return write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": f"tests.payload_handlers:{target}", "timeout": 60},
        workers={"processes": 1, "concurrency": 4, "shutdown_grace": 10},
        payload={"s3_bucket": bucket, "delete_after_success": True},
    )


def test_a_2_mib_body_from_aws_extended_client_reaches_the_handler_and_its_object_is_deleted(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path, daemon_factory: Any
) -> None:
    # GIVEN AWS's extended client sent a 2 MiB body, and the daemon runs
    url, dlq = make_queues()
    body = big_body()
    peer(local_sqs, "send", url, bucket, body=body.encode())
    assert len(keys(s3, bucket)) == 1
    daemon = daemon_factory(payload_config(tmp_path, local_sqs, url, dlq, bucket, "digest"))

    # WHEN the daemon handles it
    (seen,) = wait_until(daemon.handled, timeout=60)

    # THEN the handler saw exactly those bytes, without the size attribute; the object goes
    assert seen["sha256"] == sha(body) and seen["bytes"] == TWO_MIB
    assert SIZE_ATTRIBUTE not in seen["attributes"]
    wait_until(lambda: keys(s3, bucket) == [], timeout=30)
    wait_until(lambda: queue_total(sqs, url) == 0)
    assert daemon.stop() == 0


def test_a_legacy_pointer_from_aws_extended_client_is_resolved_too(
    local_sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path, daemon_factory: Any
) -> None:
    url, dlq = make_queues()
    body = big_body(300_000)
    peer(local_sqs, "send", url, bucket, "--legacy", body=body.encode())
    daemon = daemon_factory(payload_config(tmp_path, local_sqs, url, dlq, bucket, "digest"))
    (seen,) = wait_until(daemon.handled, timeout=60)
    assert seen["sha256"] == sha(body)
    wait_until(lambda: keys(s3, bucket) == [], timeout=30)
    assert daemon.stop() == 0


def test_send_offloads_a_2_mib_body_that_aws_extended_client_reads_back(
    local_sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path
) -> None:
    # GIVEN a 2 MiB body, over the queue's limit
    url, dlq = make_queues()
    body = big_body()
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text(json.dumps({"body": body, "attributes": {"tenant": "acme"}}) + "\n")
    config = payload_config(tmp_path, local_sqs, url, dlq, bucket, "digest")

    # WHEN `sqs-poller send` sends it
    result = run_cli("send", "--config", str(config), "--file", str(jsonl), timeout=60)

    # THEN it is sent (through S3), and AWS's extended client reads back exactly that body
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["sent"] == 1
    assert len(keys(s3, bucket)) == 1
    assert peer(local_sqs, "receive", url, bucket) == body.encode("utf-8")


def test_a_poison_large_message_keeps_its_pointer_and_object_until_replay_handles_it(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path, daemon_factory: Any
) -> None:
    # GIVEN a large message its handler refuses on first delivery
    url, dlq = make_queues()
    body = big_body(400_000)
    peer(local_sqs, "send", url, bucket, body=body.encode())
    (key,) = keys(s3, bucket)
    config = payload_config(tmp_path, local_sqs, url, dlq, bucket, "poison_unless_replayed")
    daemon = daemon_factory(config)

    # WHEN it is dead-lettered
    wait_until(lambda: queue_total(sqs, dlq) == 1, timeout=60)

    # THEN the DLQ holds the pointer, unchanged, and the object is still there
    (dead,) = sqs.receive_message(
        QueueUrl=dlq, MessageAttributeNames=["All"], VisibilityTimeout=0, WaitTimeSeconds=1
    )["Messages"]
    pointer = describe_pointer(dead["Body"], dead["MessageAttributes"])
    assert pointer is not None and (pointer["bucket"], pointer["key"]) == (bucket, key)
    assert keys(s3, bucket) == [key]

    # WHEN the operator looks at it THEN peek and export say the body is in S3, and how big
    peeked = run_cli("dlq", "peek", "--config", str(config), "--wait", "1", timeout=60)
    assert f"[in S3: s3://{bucket}/{key}, {len(body.encode())} bytes]" in peeked.stdout
    exported = tmp_path / "dlq.jsonl"
    result = run_cli(
        "dlq", "export", "--config", str(config), "--wait", "1", "--out", str(exported), "--resolve"
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in exported.read_text().splitlines()]
    assert (line["payload"]["bucket"], line["payload"]["size"]) == (bucket, len(body.encode()))
    assert sha(line["body"]) == sha(body) and keys(s3, bucket) == [key]

    # WHEN the operator replays the DLQ
    result = run_cli("dlq", "replay", "--config", str(config), "--yes", "--wait", "1", timeout=60)
    assert result.returncode == 0, result.stderr

    # THEN the handler gets the full body, and only then is the object deleted
    records = wait_until(lambda: len(daemon.handled()) == 2 and daemon.handled(), timeout=60)
    assert all(r["sha256"] == sha(body) for r in records)
    wait_until(lambda: keys(s3, bucket) == [], timeout=30)
    assert queue_total(sqs, dlq) == 0
    assert daemon.stop() == 0


def test_a_missing_object_is_dead_lettered_naming_bucket_and_key_and_no_body_is_logged(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path, daemon_factory: Any
) -> None:
    # GIVEN one pointer whose object is gone, and one whose body holds a secret
    url, dlq = make_queues()
    secret = "TOP-SECRET-" + uuid.uuid4().hex
    peer(local_sqs, "send", url, bucket, body=(secret * 30_000).encode())
    missing = json.dumps(
        ["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": bucket, "s3Key": "gone/1"}]
    )
    sqs.send_message(
        QueueUrl=url,
        MessageBody=missing,
        MessageAttributes={SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "300000"}},
    )

    # WHEN the daemon runs
    daemon = daemon_factory(payload_config(tmp_path, local_sqs, url, dlq, bucket, "digest"))
    wait_until(lambda: queue_total(sqs, dlq) == 1 and len(daemon.handled()) == 1, timeout=60)

    # THEN the DLQ says which object is missing, and no log line holds a body
    (dead,) = receive_all(sqs, dlq)
    failure = json.loads(dead["MessageAttributes"]["poller.failure"]["StringValue"])
    assert f"s3://{bucket}/gone/1" in failure["error"] and "NoSuchKey" in failure["error"]
    assert dead["Body"] == missing
    assert daemon.stop() == 0
    assert secret not in daemon.text()


def test_an_encrypted_large_body_is_stored_encrypted_and_decrypted_after_the_fetch(
    local_sqs: Any, s3: Any, bucket: str, make_queues: Any, tmp_path: Path, daemon_factory: Any
) -> None:
    from poller.crypto import create_keyring

    # GIVEN a producer and a daemon sharing a keyring and the payload bucket
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    url, dlq = make_queues()
    secret = "PLAINTEXT-" + uuid.uuid4().hex
    body = secret + big_body(600_000)
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text(json.dumps({"body": body}) + "\n")
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.payload_handlers:digest", "timeout": 60},
        workers={"processes": 1, "concurrency": 4, "shutdown_grace": 10},
        payload={"s3_bucket": bucket},
        crypto={"enabled": True, "provider": "local", "keyring_path": str(keyring)},
    )

    # WHEN `sqs-poller send --encrypt` sends it
    result = run_cli("send", "--config", str(config), "--encrypt", "--file", str(jsonl), timeout=60)
    assert result.returncode == 0, result.stderr

    # THEN S3 holds ciphertext only, and the handler gets the plaintext
    (key,) = keys(s3, bucket)
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert secret.encode() not in stored
    daemon = daemon_factory(config)
    (seen,) = wait_until(daemon.handled, timeout=60)
    assert seen["sha256"] == sha(body)
    wait_until(lambda: keys(s3, bucket) == [], timeout=30)
    assert daemon.stop() == 0
    assert secret not in daemon.text()


# --- tracing ---------------------------------------------------------------------------------


class Collector(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on loopback: the spans the daemon exports."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CollectorHandler)
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        found = []
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "links": [link.span_id.hex() for link in span.links],
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        with self.server.lock:
            self.server.spans += found
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_daemon_exports_one_span_per_message_in_the_producers_trace_and_logs_its_ids(
    local_sqs: Any, sqs: Any, make_queues: Any, tmp_path: Path, daemon_factory: Any, collector: Collector
) -> None:
    # GIVEN three messages: one with traceparent, one with an X-Ray trace header, one with neither
    url, dlq = make_queues()
    w3c_trace, w3c_parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    xray_trace, xray_parent = "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
    ids = {}
    ids["w3c"] = sqs.send_message(
        QueueUrl=url,
        MessageBody="w3c",
        MessageAttributes={
            "traceparent": {"DataType": "String", "StringValue": f"00-{w3c_trace}-{w3c_parent}-01"}
        },
    )["MessageId"]
    ids["xray"] = sqs.send_message(
        QueueUrl=url,
        MessageBody="xray",
        MessageSystemAttributes={
            "AWSTraceHeader": {
                "DataType": "String",
                "StringValue": f"Root=1-{xray_trace[:8]}-{xray_trace[8:]};Parent={xray_parent};Sampled=1",
            }
        },
    )["MessageId"]
    ids["none"] = sqs.send_message(QueueUrl=url, MessageBody="none")["MessageId"]
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.payload_handlers:log_handled", "timeout": 60},
        workers={"processes": 1, "concurrency": 4, "shutdown_grace": 10},
        tracing={"enabled": True},
    )
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SERVICE_NAME": "payload-test",
    }

    # WHEN the daemon handles and deletes them
    daemon = daemon_factory(config, env)
    wait_until(lambda: len(daemon.handled()) == 3, timeout=60)
    wait_until(lambda: queue_total(sqs, url) == 0)

    # THEN one consumer span per message, in the producer's trace where there is one
    def spans_by_message() -> dict[str, dict[str, Any]]:
        with collector.lock:
            return {s["attributes"].get("messaging.message.id"): s for s in collector.spans}

    spans = wait_until(lambda: len(spans_by_message()) >= 3 and spans_by_message(), timeout=30)
    w3c, xray, none = spans[ids["w3c"]], spans[ids["xray"]], spans[ids["none"]]
    assert (w3c["trace_id"], w3c["parent"], w3c["links"]) == (w3c_trace, w3c_parent, [w3c_parent])
    assert (xray["trace_id"], xray["parent"], xray["links"]) == (xray_trace, xray_parent, [xray_parent])
    assert none["parent"] == "" and none["trace_id"] not in (w3c_trace, xray_trace)
    for span in (w3c, xray, none):
        assert span["attributes"]["messaging.system"] == "aws_sqs"
        assert span["attributes"]["messaging.operation.type"] == "process"
        assert span["attributes"]["sqs_poller.outcome"] == "deleted"
    # AND each handler log line carries its span's trace and span ids
    handled = {r["message_id"]: r for r in daemon.logs() if r.get("event") == "handled"}
    for name, message_id in ids.items():
        assert handled[message_id]["trace_id"] == spans[message_id]["trace_id"], name
        assert handled[message_id]["span_id"] == spans[message_id]["span_id"], name
    assert daemon.stop() == 0


def test_a_message_from_sqs_poller_send_is_handled_in_the_trace_send_started(
    local_sqs: Any, sqs: Any, make_queues: Any, tmp_path: Path, daemon_factory: Any, collector: Collector
) -> None:
    # GIVEN tracing on for both `sqs-poller send` and the daemon, exporting to one collector
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.payload_handlers:log_handled", "timeout": 60},
        workers={"processes": 1, "concurrency": 4, "shutdown_grace": 10},
        tracing={"enabled": True},
    )
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }

    # WHEN a message is sent from a shell, then handled
    result = run_cli("send", "--config", str(config), "hello", env=env)
    assert result.returncode == 0, result.stderr
    (queued,) = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], VisibilityTimeout=0, WaitTimeSeconds=1
    )["Messages"]
    assert "traceparent" in queued["MessageAttributes"]
    daemon = daemon_factory(config, env)
    wait_until(lambda: len(daemon.handled()) == 1, timeout=60)

    # THEN the consumer span is the child of the create span `send` exported: one trace
    def spans() -> list[dict[str, Any]]:
        with collector.lock:
            return list(collector.spans)

    found = wait_until(lambda: len(spans()) >= 2 and spans(), timeout=30)
    (create,) = [s for s in found if s["name"].startswith("create ")]
    (process,) = [s for s in found if s["name"].startswith("process ")]
    assert process["trace_id"] == create["trace_id"] and process["parent"] == create["span_id"]
    (line,) = [r for r in daemon.logs() if r.get("event") == "handled"]
    assert line["trace_id"] == create["trace_id"]
    assert daemon.stop() == 0
