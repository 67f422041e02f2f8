"""`python -m bench.botocore_cost [CYCLES ROUNDS]`: CPU of each botocore event handler on the
worker's SQS client, as the worker makes it without and with `lean=True`, per cycle of one
ReceiveMessage (ten messages, all attributes) and one DeleteMessageBatch, against moto's
server in its own process. Handlers are timed with the thread's CPU clock around each call;
the clients run in turn, ROUNDS times, and the medians are printed (us a cycle)."""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from typing import Any

from bench.harness import client as boto3_client
from bench.harness import new_queues, send_batch
from bench.server import MotoProcess
from poller.sqs import make_client


def timed_handlers(client: Any, spent: Counter[str]) -> None:
    """Time every handler the client's emitter calls (reads botocore's emitter internals: a
    measurement, never the daemon's code path)."""
    emitter = client.meta.events._emitter

    def emit(event_name: str, kwargs: dict[str, Any], stop_on_response: bool = False) -> list[Any]:
        handlers = emitter._lookup_cache.get(event_name)
        if handlers is None:
            handlers = emitter._lookup_cache[event_name] = emitter._handlers.prefix_search(event_name)
        responses = []
        for handler in handlers:
            started = time.thread_time_ns()
            response = handler(**kwargs)
            name = getattr(handler, "__qualname__", type(handler).__name__)
            spent[f"{event_name.split('.')[0]}: {name}"] += time.thread_time_ns() - started
            responses.append((handler, response))
            if stop_on_response and response is not None:
                break
        return responses

    emitter._emit = emit


def cycle(client: Any, feeder: Any, url: str) -> float:
    """One receive of ten and its delete batch; returns the CPU seconds the two calls took."""
    send_batch(feeder, url, ["{}"] * 10)
    started = time.thread_time()
    messages = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
    client.delete_message_batch(QueueUrl=url, Entries=entries)
    return time.thread_time() - started


def main(argv: list[str]) -> int:
    cycles, rounds = (int(argv[0]), int(argv[1])) if len(argv) > 1 else (200, 3)
    kinds = ("default", "lean")
    with MotoProcess() as moto:
        feeder = boto3_client(moto.endpoint_url)
        url, _ = new_queues(feeder)
        clients = {
            kind: make_client(
                "", "us-east-1", moto.endpoint_url, attempts=1, validate=False, lean=kind == "lean"
            )
            for kind in kinds
        }
        spent: dict[str, list[Counter[str]]] = {kind: [] for kind in kinds}
        total: dict[str, list[float]] = {kind: [] for kind in kinds}
        for n in range(rounds + 1):  # the first round warms up
            for kind, client in clients.items():
                counter: Counter[str] = Counter()
                timed_handlers(client, counter)
                seconds = sum(cycle(client, feeder, url) for _ in range(cycles))
                if n:
                    spent[kind].append(counter)
                    total[kind].append(seconds)
    names = sorted({name for kind in kinds for c in spent[kind] for name in c})
    median = {
        kind: {name: statistics.median(c[name] for c in spent[kind]) / cycles / 1000 for name in names}
        for kind in kinds
    }
    print(f"{'us a cycle (receive of 10 + delete batch)':<72} {'default':>8} {'lean':>8}")
    for name in sorted(names, key=lambda n: -median["default"][n]):
        print(f"{name:<72} {median['default'][name]:8.1f} {median['lean'][name]:8.1f}")
    handlers = {kind: sum(median[kind].values()) for kind in kinds}
    print(f"{'all handlers':<72} {handlers['default']:8.1f} {handlers['lean']:8.1f}")
    calls = {kind: statistics.median(total[kind]) / cycles * 1e6 for kind in kinds}
    whole = "both calls, whole (network on loopback included; noisy)"
    print(f"{whole:<72} {calls['default']:8.1f} {calls['lean']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
