"""Compose the pipeline of one worker process from the config, once, in a fixed order:
flow control (outermost: its `after` sees the final outcome; a rate-limit wait is no part of a
span), tracing (its span covers the rest), S3 payload, decrypt (a producer may encrypt the
offloaded body), filters (on the body the handler would see), idempotency. A step whose section
is off is not built at all. Secrets are not a per-message step: they are handed to the handler
and refreshed on a thread of their own."""

from __future__ import annotations

from typing import Any

from poller.config import Config
from poller.pipeline import Pipeline


def build_pipeline(config: Config, flow: Any = None, secrets: Any = None) -> tuple[Pipeline, Any]:
    """(the pipeline, the worker's Secrets or None). Raises what a step's set-up raises.

    `flow`: the queue's FlowStep (poller.pipeline.flow), first in the chain. `secrets`: the
    worker's, when another queue's pipeline loaded them already (one load a process)."""
    from poller.pipeline.decrypt import build_decrypt
    from poller.pipeline.idempotency import IdempotencyStep, build_idempotency_store
    from poller.pipeline.secrets import SecretsStep, build_secrets

    steps: list[Any] = [flow] if flow is not None else []
    if config.tracing.enabled:
        from poller.pipeline.tracing import Tracing

        steps.append(Tracing())
    steps.append(build_payload(config))
    if secrets is None:  # (else the pipeline that loaded them keeps them fresh)
        secrets = build_secrets(config.secrets)
        if secrets is not None:
            steps.append(SecretsStep(secrets))
    decrypt = build_decrypt(config.crypto)
    if decrypt is not None:
        steps.append(decrypt)
    if config.handler.filters:
        steps.append(build_filters(config))
    store = build_idempotency_store(config.idempotency, config.handler.timeout)
    if store is not None:
        steps.append(IdempotencyStep(store))
    return Pipeline(steps), secrets


def build_filters(config: Config) -> Any:
    """Lambda's filter criteria, matched against the message in Lambda's record shape."""
    from poller.handlers.lambda_event import RecordBuilder
    from poller.pipeline.filters import FilterMessages
    from poller.sqs import queue_region

    records = RecordBuilder(config.queue.url, queue_region(config.queue))
    return FilterMessages(config.handler.filters, records.record)


def build_payload(config: Config) -> Any:
    """Always on: a body in the Extended Client's pointer format is fetched from S3 for the
    handler (a plain body costs two lookups). With `[payload] s3_bucket`, only that bucket."""
    from poller.pipeline.payload import build_payload_step
    from poller.sqs import queue_region

    p = config.payload
    return build_payload_step(
        p.delete_after_success,
        allowed_buckets=[p.s3_bucket] if p.s3_bucket else (),
        region=p.region or queue_region(config.queue),
        endpoint_url=p.endpoint_url or config.queue.endpoint_url,
        pool_size=config.workers.concurrency,
    )
