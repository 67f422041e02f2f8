"""The rules of the configuration that span keys, in one place (huey's habit): each says what
is wrong, naming the keys, or None. `poller.configload` runs them once the sections are built."""

from __future__ import annotations

from poller.config import Config, QueueSpec


def cross_check(config: Config, tables: bool = False) -> str | None:
    """Rules that span keys, in one place. Returns what is wrong, naming the keys. `tables`:
    the queues come from [queues.NAME] tables (so their keys are named queues.NAME...)."""
    urls: dict[str, str] = {}
    for spec in config.queues:
        at = f"queues.{spec.name}" if tables else "queue"
        problem = check_queue(spec, config.workers.concurrency, at, f"{at}.handler" if tables else "handler")
        if problem:
            return problem
        if (other := urls.setdefault(spec.queue.url, spec.name)) != spec.name:
            return f"{at}.url is also queues.{other}.url: one table a queue"
    if config.retry.backoff_max < config.retry.backoff_base:
        return (
            f"retry.backoff_max = {config.retry.backoff_max} is below retry.backoff_base = "
            f"{config.retry.backoff_base:g}; allowed: >= backoff_base"
        )
    m = config.metrics
    if m.emf_namespace and not (m.deployment and m.version):
        return "metrics.emf_namespace needs metrics.deployment and metrics.version (the EMF dimensions)"
    lc = config.lifecycle
    if lc.enabled and not (lc.asg_name and lc.hook_name):
        return "lifecycle.enabled = true needs lifecycle.asg_name and lifecycle.hook_name"
    c = config.crypto
    if c.enabled and c.provider == "local" and not c.keyring_path:
        return "crypto.keyring_path: required when crypto.provider = 'local'"
    if c.require_encryption and not c.enabled:
        return "crypto.require_encryption: needs crypto.enabled = true"
    if config.idempotency.enabled and not config.idempotency.table:
        return "idempotency.table: required when idempotency.enabled = true"
    return None


def check_queue(spec: QueueSpec, concurrency: int, at: str, handler_at: str) -> str | None:
    """One queue's rules; `at` and `handler_at` name its tables ("queue" and "handler" in the
    one-queue form, "queues.NAME" and "queues.NAME.handler" in a queue table)."""
    q, h = spec.queue, spec.handler
    if q.url == q.dlq_url:
        return f"{at}.dlq_url must differ from {at}.url"
    if q.is_fifo != q.dlq_url.endswith(".fifo"):
        return f"{at}.dlq_url must be a FIFO queue (.fifo) exactly when {at}.url is one"
    if spec.max_concurrency > concurrency:
        return (
            f"{at}.max_concurrency = {spec.max_concurrency} is above workers.concurrency = "
            f"{concurrency}: the queues share a worker's slots; allowed: 0..{concurrency}"
        )
    slots = spec.max_concurrency or concurrency
    if h.style != "message" and h.batch_size > slots:
        limit = f"{at}.max_concurrency" if spec.max_concurrency else "workers.concurrency"
        return (
            f"{handler_at}.batch_size = {h.batch_size} is above {limit} = {slots}: a worker never holds "
            "more of a queue's messages than that"
        )
    return None
