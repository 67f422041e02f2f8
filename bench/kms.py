"""KMS calls per message with envelope encryption, cached data keys against no cache.

A producer encrypts N bodies and one consumer process decrypts them, both through
moto's KMS on loopback; each provider counts its calls. Without a cache every message
costs one GenerateDataKey and one Decrypt, as in a stateless function.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from poller.config import CryptoConfig
from poller.crypto.envelope import Decryptor, Encryptor, build_cache
from poller.crypto.keys import KmsKeyProvider
from poller.message import Message


def _message(body: str, attributes: dict[str, Any], n: int) -> Message:
    return Message(
        message_id=f"m-{n}",
        body=body,
        receive_count=1,
        group_id=None,
        sent_at=datetime.now(tz=UTC),
        attributes={},
        message_attributes=attributes,
        queue_url="bench",
    )


def measure_kms(endpoint_url: str, messages: int = 5000) -> dict[str, Any]:
    import boto3

    from poller.dev.localsqs import use_fake_credentials

    use_fake_credentials()
    kms = boto3.session.Session().client("kms", region_name="us-east-1", endpoint_url=endpoint_url)
    key_id = kms.create_key(Description="sqs-poller bench")["KeyMetadata"]["KeyId"]
    cfg = CryptoConfig(enabled=True, key_id=key_id, endpoint_url=endpoint_url, region="us-east-1")
    results: dict[str, Any] = {"messages": messages, "data_key_max_messages": cfg.data_key_max_messages}
    for label, cached in (("cached", True), ("uncached", False)):
        producer = KmsKeyProvider(key_id, region="us-east-1", endpoint_url=endpoint_url)
        consumer = KmsKeyProvider(key_id, region="us-east-1", endpoint_url=endpoint_url)
        encryptor = Encryptor(producer, build_cache(cfg) if cached else None)
        decryptor = Decryptor(consumer, build_cache(cfg) if cached else None)
        started = time.perf_counter()
        for n in range(messages):
            body, attributes = encryptor.encrypt(json.dumps({"n": n, "user": f"user{n}"}))
            plain = decryptor.decrypt_message(_message(body, attributes, n))
            assert json.loads(plain.body)["n"] == n
        elapsed = time.perf_counter() - started
        results[label] = {
            "producer_calls_per_message": sum(producer.calls.values()) / messages,
            "consumer_calls_per_message": sum(consumer.calls.values()) / messages,
            "ms_per_message": 1000 * elapsed / messages,
        }
    return results
