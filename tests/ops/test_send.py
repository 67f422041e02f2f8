"""`sqs-poller send`: bodies, JSONL files, FIFO groups, and encryption for the daemon."""

from __future__ import annotations

import json

from poller.crypto import create_keyring
from tests.conftest import receive_all, wait_until, write_config
from tests.integration.test_daemon import run_cli


def test_send_body_count_and_attributes(local_sqs, sqs, make_queues):
    url, _ = make_queues()
    result = run_cli(
        "send",
        "--queue-url",
        url,
        "--endpoint-url",
        local_sqs.endpoint_url,
        "--attribute",
        "tenant=acme",
        "--count",
        "12",
        "hello",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 12
    messages = receive_all(sqs, url)
    assert len(messages) == 12
    assert {m["Body"] for m in messages} == {"hello"}
    assert {m["MessageAttributes"]["tenant"]["StringValue"] for m in messages} == {"acme"}


def test_send_jsonl_to_a_fifo_queue_keeps_group_order(local_sqs, sqs, make_queues, tmp_path):
    url, _ = make_queues(fifo=True)
    lines = [{"body": {"n": n}, "group_id": "g1", "attributes": {"n": n}} for n in range(15)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = run_cli(
        "send", "--queue-url", url, "--endpoint-url", local_sqs.endpoint_url, "--file", str(path)
    )
    assert result.returncode == 0, result.stderr
    messages = []
    while len(messages) < 15:  # a FIFO group yields its next messages once these are deleted
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )["Messages"]
        messages += got
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert [json.loads(m["Body"])["n"] for m in messages] == list(range(15))
    assert messages[3]["MessageAttributes"]["n"] == {"DataType": "Number", "StringValue": "3"}


def test_send_usage_errors_exit_2(local_sqs, make_queues, tmp_path):
    url, _ = make_queues()
    common = ("send", "--queue-url", url, "--endpoint-url", local_sqs.endpoint_url)
    assert run_cli(*common).returncode == 2  # neither BODY nor --file
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "ok"}\nnot json\n')
    result = run_cli(*common, "--file", str(bad))
    assert result.returncode == 2 and "bad.jsonl:2: not JSON" in result.stderr
    result = run_cli(*common, "--keyring", str(bad), "x")
    assert result.returncode == 2 and "only make sense with --encrypt" in result.stderr


def test_encrypted_send_is_decrypted_for_the_handler(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a local keyring and a body sent with --encrypt
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    url, dlq = make_queues()
    secret_body = '{"username": "alice", "password": "hunter2"}'
    result = run_cli(
        "send",
        "--queue-url",
        url,
        "--endpoint-url",
        local_sqs.endpoint_url,
        "--encrypt",
        "--keyring",
        str(keyring),
        secret_body,
    )
    assert result.returncode == 0, result.stderr

    # THEN what sits on the queue is not the plaintext, and is marked as encrypted
    [on_queue] = sqs.receive_message(
        QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )["Messages"]
    assert "hunter2" not in on_queue["Body"] and "poller.encryption" in on_queue["MessageAttributes"]

    # WHEN a daemon with [crypto] for that keyring handles it
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        crypto={"enabled": True, "provider": "local", "keyring_path": str(keyring)},
    )
    daemon = daemon_factory(config)
    [handled] = wait_until(lambda: daemon.handled(), timeout=30)

    # THEN the handler saw the plaintext, and the logs never did
    assert handled["body"] == secret_body
    assert "hunter2" not in daemon.text()
    assert daemon.stop() == 0
