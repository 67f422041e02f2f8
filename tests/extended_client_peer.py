"""AWS's own Python SQS Extended Client, as a separate producer or consumer process.

The package replaces boto3's Session class process-wide when imported, so it runs here, in its
own process, as it would in another team's service:

    python tests/extended_client_peer.py send ENDPOINT QUEUE_URL BUCKET [--legacy] < body
    python tests/extended_client_peer.py receive ENDPOINT QUEUE_URL BUCKET > body
"""

from __future__ import annotations

import sys

import boto3
import sqs_extended_client  # noqa: F401 - patches boto3's Session with the extended client


def client(endpoint: str, bucket: str, legacy: bool = False):  # type: ignore[no-untyped-def]
    session = boto3.session.Session(region_name="us-east-1")
    sqs = session.client("sqs", endpoint_url=endpoint)
    sqs.large_payload_support = bucket
    sqs.use_legacy_attribute = legacy
    sqs.delete_payload_from_s3 = True
    sqs.s3_client = session.client("s3", endpoint_url=endpoint)
    return sqs


def main(argv: list[str]) -> int:
    command, endpoint, url, bucket = argv[:4]
    sqs = client(endpoint, bucket, legacy="--legacy" in argv)
    if command == "send":
        body = sys.stdin.buffer.read().decode("utf-8")
        response = sqs.send_message(QueueUrl=url, MessageBody=body)
        print(response["MessageId"])
        return 0
    if command == "receive":
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return 1
        sys.stdout.buffer.write(messages[0]["Body"].encode("utf-8"))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
