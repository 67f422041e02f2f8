"""Producer side of the example: encrypt create-mailbox requests and enqueue them.

    python -m examples.send_mailbox QUEUE_URL --keyring keyring.json [--endpoint-url URL]
    python -m examples.send_mailbox QUEUE_URL --kms-key alias/mailbox   # with AWS credentials

What an API does with ``poller.crypto.envelope``: one ``Encryptor`` per process, so the data key is
reused (bounded by age and count) and KMS sees a handful of calls, not one per request.
"""

from __future__ import annotations

import argparse
import json
import uuid

import boto3

from examples.mailbox import SAMPLE_REQUESTS
from poller.crypto import DataKeyCache, Encryptor, KmsKeyProvider, LocalKeyring


def send_requests(sqs, queue_url: str, encryptor: Encryptor, payloads: list[dict]) -> list[str]:
    """Encrypt and send each payload; returns the SQS message ids."""
    ids = []
    fifo = queue_url.endswith(".fifo")
    for payload in payloads:
        body, attributes = encryptor.encrypt(json.dumps(payload))
        extra = {"MessageGroupId": payload.get("domain", "default")} if fifo else {}
        if fifo:
            extra["MessageDeduplicationId"] = uuid.uuid4().hex
        response = sqs.send_message(
            QueueUrl=queue_url, MessageBody=body, MessageAttributes=attributes, **extra
        )
        ids.append(response["MessageId"])
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send encrypted sample create-mailbox requests")
    parser.add_argument("queue_url")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--keyring", help="a local keyring file (poller.crypto.envelope.create_keyring)")
    key.add_argument("--kms-key", help="a KMS key id, ARN or alias")
    parser.add_argument("--endpoint-url", default=None, help="a local SQS-compatible endpoint")
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    provider = (
        LocalKeyring(args.keyring) if args.keyring else KmsKeyProvider(args.kms_key, region=args.region)
    )
    encryptor = Encryptor(provider, DataKeyCache(max_age=300, max_messages=1000))
    sqs = boto3.client("sqs", region_name=args.region, endpoint_url=args.endpoint_url)
    ids = send_requests(sqs, args.queue_url, encryptor, [payload for payload, _ in SAMPLE_REQUESTS])
    print(f"sent {len(ids)} encrypted requests; key service calls: {dict(provider.calls)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
