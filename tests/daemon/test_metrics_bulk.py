"""`observe_all` (a batch's observations, one write a bucket) must read exactly as observing each
value does, at the bucket bounds too."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from poller.daemon.metrics import AGE_BUCKETS, observe_all


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_all_reads_as_observing_each_value():
    amounts = [0.0, 0.01, 0.0100001, 0.3, 0.25, 2.5, 7, 3600, 3600.5, 1e9, 0.05, 0.05]
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    each = Histogram("age_seconds", "age", buckets=AGE_BUCKETS, registry=one_by_one)
    together = Histogram("age_seconds", "age", buckets=AGE_BUCKETS, registry=bulk)
    for amount in amounts:
        each.observe(amount)
    observe_all(together, amounts[:5])
    observe_all(together, amounts[5:])
    observe_all(together, [])
    assert samples(bulk) == samples(one_by_one)
    assert samples(bulk)[("age_seconds_bucket", (("le", "0.01"),))] == 2  # 0.0 and the bound itself
