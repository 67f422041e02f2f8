"""Run a handler at most once per idempotency key, although SQS delivers at least once.

A DynamoDB table (partition key ``id``, a string; TTL attribute ``expires_at``) holds one
record per key: the SQS message id, or a named field of the JSON body (``key_field``, dotted
for nested objects, e.g. ``"request.id"``), so producer-side duplicates are caught too.

    store = IdempotencyStore("sqs-poller-idempotency", key_field=None, ttl_seconds=86400,
                             in_progress_timeout=handler_timeout)
    ran = store.run_once(message, handler.handle)   # True: ran; False: duplicate, skipped

``run_once``:

1. Conditional ``PutItem`` of ``{status: in_progress, owner, locked_until, expires_at}`` that
   succeeds only if there is no record, the record is ``in_progress`` and its lock has
   expired (a worker died or overran ``in_progress_timeout``: take it over), or the record's
   TTL has passed (DynamoDB deletes expired items lazily).
2. If the record is ``completed``: return ``False`` without running the handler; the daemon
   deletes the message as for any return.
3. If another worker holds the lock: raise ``Retry(delay=<seconds left on its lock>)``.
4. Run the handler. If it raises anything (``Retry``, ``Poison`` or an error), delete our
   record (only if we still own it) so the next attempt or a DLQ replay can run, and re-raise.
5. On success, ``UpdateItem`` to ``completed`` with ``expires_at = now + ttl_seconds``.
   If that write fails the handler has still run: log it and return ``True``.

A body without the key field, or a body that is not JSON, is ``Poison`` (the reason names the
field, never a value). DynamoDB being unreachable or throttled before the handler runs
raises ``IdempotencyError``, a plain exception, so the daemon retries with backoff.
``create_table(client, name)`` makes the table (for tests and the demo; production uses the
Terraform module). ``build_idempotency_store(cfg, handler_timeout)`` builds the store for the
``[idempotency]`` section (or None when disabled); ``IdempotencyStep`` puts it in the pipeline.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from poller.aws import aws_client
from poller.config import IdempotencyConfig
from poller.message import Message, Poison, Retry, Skip

log = structlog.get_logger(__name__)

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
MAX_KEY_BYTES = 1024
_CLAIM_ATTEMPTS = 3
_NAMES = {
    "#id": "id",
    "#status": "status",
    "#owner": "owner",
    "#locked": "locked_until",
    "#expires": "expires_at",
}


class IdempotencyError(Exception):
    """The idempotency table could not be read or written: retried with backoff."""


class IdempotencyStore:
    """At-most-once execution per key, backed by a DynamoDB table."""

    def __init__(
        self,
        table: str,
        key_field: str | None = None,
        ttl_seconds: int = 86400,
        in_progress_timeout: float = 300.0,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.table = table
        self.key_field = key_field or None
        self.ttl_seconds = int(ttl_seconds)
        self.in_progress_timeout = float(in_progress_timeout)
        self._client = client
        self._region = region or None
        self._endpoint_url = endpoint_url or None
        self._clock = clock

    def __repr__(self) -> str:
        return f"IdempotencyStore(table={self.table!r}, key_field={self.key_field!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb", self._region, self._endpoint_url)
        return self._client

    def key_for(self, message: Message) -> str:
        """The idempotency key: the message id, or the configured JSON field of the body."""
        if self.key_field is None:
            return message.message_id
        try:
            value: Any = json.loads(message.body)
        except ValueError:
            raise Poison(f"body is not JSON; the idempotency key field {self.key_field!r} needs it") from None
        for part in self.key_field.split("."):
            if not isinstance(value, dict) or part not in value:
                raise Poison(f"idempotency key field {self.key_field!r} is missing from the body")
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise Poison(f"idempotency key field {self.key_field!r} must be a non-empty string")
        key = str(value)
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise Poison(f"idempotency key field {self.key_field!r} is over {MAX_KEY_BYTES} bytes")
        return key

    def run_once(self, message: Message, handler: Callable[[Message], Any]) -> bool:
        """Run `handler(message)` unless its key already completed. True if it ran."""
        claim = self.claim(message)
        if claim is None:
            return False
        try:
            handler(message)
        except BaseException as exc:
            self.finish(claim, message, exc)
            raise
        self.finish(claim, message, None)
        return True

    def claim(self, message: Message) -> tuple[str, str] | None:
        """Take the key for this run: (key, owner), or None if the key already completed.

        Raises Retry while another worker holds the key, Poison for a body without the key.
        """
        key = self.key_for(message)
        owner = uuid.uuid4().hex
        for _ in range(_CLAIM_ATTEMPTS):
            existing = self._claim(key, owner, message)
            if existing is None:
                return key, owner
            status = existing.get("status", {}).get("S")
            if status == COMPLETED:
                log.info(
                    "idempotency_duplicate_skipped",
                    message_id=message.message_id,
                    receive_count=message.receive_count,
                )
                return None
            if status == IN_PROGRESS:
                locked_until = float(existing.get("locked_until", {}).get("N", "0"))
                wait = locked_until - self._clock()
                if wait > 0:
                    delay = float(min(43200, max(1, math.ceil(wait))))
                    raise Retry(delay=delay, reason="another worker holds this idempotency key")
            # The record changed between our write and our read: try to claim again.
        raise IdempotencyError("could not claim the idempotency key: contended")

    def finish(self, claim: tuple[str, str], message: Message, error: BaseException | None) -> None:
        """After the handler: completed on success; on failure let the next attempt run."""
        key, owner = claim
        if error is None:
            self._complete(key, owner, message)
        else:
            self._release(key, owner)

    def _claim(self, key: str, owner: str, message: Message) -> dict[str, Any] | None:
        """Write our in-progress record. None if claimed, else the record that stopped us."""
        now = self._clock()
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "id": {"S": key},
                    "status": {"S": IN_PROGRESS},
                    "owner": {"S": owner},
                    "message_id": {"S": message.message_id},
                    "locked_until": {"N": _number(now + self.in_progress_timeout)},
                    "expires_at": {"N": str(int(now + self.ttl_seconds))},
                },
                ConditionExpression=(
                    "attribute_not_exists(#id)"
                    " OR (#status = :in_progress AND #locked < :now)"
                    " OR #expires < :now_int"
                ),
                ExpressionAttributeNames={k: _NAMES[k] for k in ("#id", "#status", "#locked", "#expires")},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":now": {"N": _number(now)},
                    ":now_int": {"N": str(int(now))},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except Exception as exc:
            code = _error_code(exc)
            if code != "ConditionalCheckFailedException":
                log.warning("idempotency_claim_failed", message_id=message.message_id, error=code)
                raise IdempotencyError(f"DynamoDB PutItem failed: {code}") from None
            item = getattr(exc, "response", {}).get("Item")
        if item is None:
            item = self._read(key)
        return item or {}

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True)
        except Exception as exc:
            raise IdempotencyError(f"DynamoDB GetItem failed: {_error_code(exc)}") from None
        return response.get("Item")

    def _release(self, key: str, owner: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except Exception as exc:
            # The lock expires on its own; the next attempt takes it over then.
            log.warning("idempotency_release_failed", error=_error_code(exc))

    def _complete(self, key: str, owner: str, message: Message) -> None:
        now = self._clock()
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression="SET #status = :completed, #expires = :expires REMOVE #locked",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={k: _NAMES[k] for k in ("#status", "#expires", "#locked", "#owner")},
                ExpressionAttributeValues={
                    ":completed": {"S": COMPLETED},
                    ":expires": {"N": str(int(now + self.ttl_seconds))},
                    ":owner": {"S": owner},
                },
            )
        except Exception as exc:
            code = _error_code(exc)
            event = (
                "idempotency_lock_lost"
                if code == "ConditionalCheckFailedException"
                else "idempotency_complete_failed"
            )
            log.warning(event, message_id=message.message_id, error=code)


def _number(value: float) -> str:
    return f"{value:.3f}"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def create_table(client: Any, name: str) -> None:
    """Create the idempotency table (on-demand, TTL on ``expires_at``) and wait for it."""
    try:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except Exception as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )


def build_idempotency_store(
    cfg: IdempotencyConfig, handler_timeout: float, client: Any = None
) -> IdempotencyStore | None:
    """The worker's store, or None when ``[idempotency]`` is disabled."""
    if not cfg.enabled:
        return None
    return IdempotencyStore(
        cfg.table,
        key_field=cfg.key_field or None,
        ttl_seconds=cfg.ttl_seconds,
        in_progress_timeout=cfg.in_progress_timeout or handler_timeout,
        client=client,
        region=cfg.region,
        endpoint_url=cfg.endpoint_url,
    )


class IdempotencyStep:
    """The pipeline step: claim before the handler, complete or release after it."""

    def __init__(self, store: IdempotencyStore):
        self.store = store
        self._claims: dict[str, tuple[str, str]] = {}  # message id -> claim, while it runs

    def before(self, message: Message) -> Message:
        claim = self.store.claim(message)
        if claim is None:
            raise Skip("deleted", "idempotency key already completed")
        self._claims[message.message_id] = claim
        return message

    def after(self, message: Message, error: BaseException | None) -> None:
        claim = self._claims.pop(message.message_id, None)
        if claim is not None:
            self.store.finish(claim, message, error)
