"""The fleet drill: an Auto Scaling stand-in on loopback running daemon instances against moto's
SQS, applying the target tracking rule of `aws_autoscaling_policy.backlog_seconds` (policy.py)
once a 10-s period to the metric it states, Average(BacklogSeconds) / Sum(Slots), computed from
the daemons' own high-resolution EMF lines (they sample the queues themselves)."""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fleet.instance import Instance
from bench.fleet.policy import Policy, decide
from bench.fleet.standins import AutoScalingApi
from bench.fleet.traffic import Producer, Records
from bench.harness import REPO, client, compile_tree
from bench.server import MotoProcess
from poller.dev.localsqs import create_queue_pair, free_port

# Modelled (AWS) seconds a drill second. 1: the policy's periods are 10 s on AWS too, and the
# warm-up, the scale-in alarm and the cooldown fit the drill's six minutes as they are.
COMPRESSION = 1
EMF_INTERVAL = 10  # the daemon's own interval (scaling.INTERVAL), the policy's period
# A period's datapoint is read this long after the period ends: the daemon writes the sample
# at the period's start, and journald -> exporter -> agent -> CloudWatch Logs' EMF takes
# about 10-15 s (docs/operations.md, "Speed"): read 12.5 s after the sample.
DELIVERY = 2.5


@dataclass(frozen=True)
class QueueSpec:
    name: str
    handler: str
    seconds: float  # the handler's time, also the queue's seconds_per_message (until measured)
    base_rate: float  # messages a second


@dataclass(frozen=True)
class Settings:
    queues: tuple[QueueSpec, ...] = (
        QueueSpec("fast", "bench.handlers:fleet_20ms", 0.02, 1.5),
        QueueSpec("medium", "bench.handlers:fleet_200ms", 0.2, 1.0),
        QueueSpec("slow", "bench.handlers:fleet_1s", 1.0, 1.5),
    )
    spike_queue: str = "slow"
    spike_factor: float = 10.0
    base_seconds: float = 60.0  # then the spike, then base again, then quiet
    spike_seconds: float = 60.0
    after_seconds: float = 200.0  # long enough for the scale-in to drain instances holding messages
    quiet_limit: float = 300.0  # at most this long quiet, waiting for the scale-in
    period: float = 10.0  # the policy's metric_stat period
    concurrency: int = 10  # base load holds 1.7 slots, the spike 15.2; an idle queue's probe holds one
    shutdown_grace: int = 15
    drain_bound: float = 60.0  # the stand-in's wait for a terminated daemon (the hook's timeout)
    policy: Policy = field(
        default_factory=lambda: Policy(
            # target_backlog_seconds: a queueing delay of 6 s accepted, so that the spike is
            # above it within its first 10-20 s on one instance (with the module's default of
            # 60 s the same spike would take over a minute to get there)
            target=6.0,
            min_size=1,
            max_size=3,
            warmup=120.0 / COMPRESSION,  # instance_warmup_seconds' default
            cooldown=300.0 / COMPRESSION,  # target tracking's default scale-in cooldown
        )
    )

    def rates(self, t: float) -> dict[str, float]:
        spike = self.base_seconds <= t < self.base_seconds + self.spike_seconds
        quiet = t >= self.base_seconds + self.spike_seconds + self.after_seconds
        return {
            q.name: 0.0
            if quiet
            else q.base_rate * (self.spike_factor if spike and q.name == self.spike_queue else 1)
            for q in self.queues
        }

    @property
    def quiet_at(self) -> float:
        return self.base_seconds + self.spike_seconds + self.after_seconds


def write_config(
    workdir: Path, endpoint: str, asg_url: str, urls: dict[str, tuple[str, str]], s: Settings
) -> Path:
    """One config for every instance; each sets its own IMDS URL and metrics port from the
    environment (SQS_POLLER_LIFECYCLE_IMDS_URL, SQS_POLLER_METRICS_LISTEN)."""
    lines = [
        "[workers]",
        "processes = 1",
        f"concurrency = {s.concurrency}",
        f"shutdown_grace = {s.shutdown_grace}",
        "[metrics]",
        f'listen = "127.0.0.1:{free_port()}"',
        'emf_namespace = "SQSPoller/fleet-drill"',
        'deployment = "fleet-drill"',
        'version = "drill"',
        "[logging]",
        'level = "info"',
        'format = "json"',
        "[lifecycle]",
        "enabled = true",
        'asg_name = "fleet-drill"',
        'hook_name = "fleet-drill-drain"',
        'imds_url = "http://127.0.0.1:1"',
        f'endpoint_url = "{asg_url}"',
        "poll_seconds = 1",
        "heartbeat_seconds = 5",
    ]
    for q in s.queues:
        url, dlq = urls[q.name]
        lines += [
            f"[queues.{q.name}]",
            f'url = "{url}"',
            f'dlq_url = "{dlq}"',
            f'endpoint_url = "{endpoint}"',
            'region = "us-east-1"',
            "wait_time_seconds = 2",
            "visibility_timeout = 30",
            "max_receives = 5",
            f"seconds_per_message = {q.seconds}",
            f"[queues.{q.name}.handler]",
            f'target = "{q.handler}"',
            "timeout = 20",
        ]
    path = workdir / "fleet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Group:
    """The Auto Scaling group stand-in: launches instances, terminates them through the
    lifecycle hook (IMDS says Terminated; the daemon drains and completes the action) and
    waits for each to exit, bounded."""

    def __init__(self, s: Settings, config: Path, workdir: Path, records: Path, asg: AutoScalingApi):
        self.s, self.config, self.workdir, self.records, self.asg = s, config, workdir, records, asg
        self.in_service: list[Instance] = []  # in the group (warming up or not), not terminating
        self.terminated: list[dict[str, Any]] = []  # what each scale-in's drain did
        self.every: list[Instance] = []
        self.last_scale_in = -math.inf
        self._waits: list[threading.Thread] = []
        self._numbers = iter(range(1, 1000))

    def launch(self, now: float) -> Instance:
        instance = Instance(next(self._numbers), self.config, self.workdir, self.records, now)
        self.in_service.append(instance)
        self.every.append(instance)
        return instance

    def scale_to(self, desired: int, now: float) -> None:
        while len(self.in_service) < desired:
            self.launch(now)
        if len(self.in_service) > desired:
            self.last_scale_in = now
        while len(self.in_service) > desired:
            oldest = min(self.in_service, key=lambda i: i.launched)  # termination_policies: OldestInstance
            self.in_service.remove(oldest)
            oldest.terminate()
            wait = threading.Thread(target=self._drain, args=(oldest, now), daemon=True)
            wait.start()
            self._waits.append(wait)

    def _drain(self, instance: Instance, decided: float) -> None:
        code = instance.wait_exit(self.s.drain_bound)
        if code is None:
            instance.kill()  # the hook's timeout ran out: the instance goes anyway
        exited = instance.exited_at or time.monotonic()
        completes = self.asg.completed(instance.instance_id)
        self.terminated.append(
            {
                "instance": instance.instance_id,
                "decided_at": decided,
                "exit_code": code,
                "drain_seconds": round(exited - (instance.terminate_at or exited), 1),
                "lifecycle_completed": [c.get("LifecycleActionResult") for c in completes],
                "heartbeats": sum(
                    1
                    for a in self.asg.actions
                    if a.get("Action") == "RecordLifecycleActionHeartbeat"
                    and a.get("InstanceId") == instance.instance_id
                ),
                "grace_expired": "shutdown_grace_expired" in instance.log.read_text(errors="replace"),
            }
        )

    def draining(self) -> int:
        return sum(1 for w in self._waits if w.is_alive())

    def wait_drains(self) -> None:
        for wait in self._waits:
            wait.join(timeout=self.s.drain_bound + 10)


def sample(
    s: Settings, sqs: Any, urls: dict[str, tuple[str, str]], group: Group, boundary: float
) -> dict[str, Any]:
    """The datapoint of the period [boundary - period, boundary) of the policy's metric math:
    Average(BacklogSeconds) / FILL(Sum(Slots), min_size x slots) / samples a period, from the
    daemons' emf_scaling lines with timestamps in the period; None when no daemon published
    BacklogSeconds (the policy does not fill it: missing data). SQS's own count of visible
    messages only for the table."""
    visible = {}
    for q in s.queues:
        attrs = sqs.get_queue_attributes(
            QueueUrl=urls[q.name][0], AttributeNames=["ApproximateNumberOfMessages"]
        )
        visible[q.name] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    start_ms, end_ms = int((boundary - s.period) * 1000), int(boundary * 1000)
    records = [r for i in group.every for r in i.emf_between(start_ms, end_ms)]
    seconds = {}
    for q in s.queues:
        values = [
            r["SecondsPerMessage"] for r in records if r.get("Queue") == q.name and "SecondsPerMessage" in r
        ]
        seconds[q.name] = sum(values) / len(values) if values else None
    backlogs = [r["BacklogSeconds"] for r in records if "BacklogSeconds" in r]
    slot_values = [r["Slots"] for r in records if "Slots" in r]
    per_period = s.period / EMF_INTERVAL
    fallback = s.policy.min_size * s.concurrency * per_period
    ready_slots = (sum(slot_values) if slot_values else fallback) / per_period
    backlog = sum(backlogs) / len(backlogs) if backlogs else None
    return {
        "visible": visible,
        "seconds_per_message": seconds,
        "backlog": backlog,  # Average(BacklogSeconds): slot-seconds waiting
        "reporting": len(backlogs),
        "ready_slots": ready_slots,
        "slots_reported": bool(slot_values),
        "backlog_seconds": None if backlog is None else backlog / ready_slots,
    }


def run(s: Settings, results: Path) -> dict[str, Any]:
    compile_tree(REPO)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-drill-"))
    moto = MotoProcess().start()
    asg = AutoScalingApi()
    sqs = client(moto.endpoint_url)
    urls = {q.name: create_queue_pair(sqs, f"fleet-{q.name}", False, 5, 30) for q in s.queues}
    config = write_config(workdir, moto.endpoint_url, asg.url, urls, s)
    records = Records(workdir / "records.jsonl")
    group = Group(s, config, workdir, records.path, asg)
    producer = Producer(sqs, {q.name: urls[q.name][0] for q in s.queues}, s.rates)
    rows: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    history: list[float | None] = []
    try:
        first = group.launch(0.0)
        deadline = time.monotonic() + 60
        while first.ready_at is None and time.monotonic() < deadline and first.alive():
            time.sleep(0.2)
        if first.ready_at is None:
            raise RuntimeError(f"the first instance did not become ready:\n{first.log.read_text()[-3000:]}")
        producer.start()
        t0 = time.monotonic()
        first.launched = -s.policy.warmup  # the group's first instance, in service before the drill
        boundary = math.floor(time.time() / s.period) * s.period + s.period
        while True:
            time.sleep(max(0.0, boundary + DELIVERY - time.time()))  # the datapoint arrives late
            now = time.monotonic() - t0
            point = sample(s, sqs, urls, group, boundary)
            records.read()
            history.append(point["backlog_seconds"])
            launches = [i.launched for i in group.in_service]
            desired = decide(s.policy, history, launches, group.last_scale_in, now)
            before = len(group.in_service)
            if desired != before:
                decisions.append(
                    {
                        "t": round(now, 1),
                        "from": before,
                        "to": desired,
                        "backlog_seconds": round(point["backlog_seconds"] or 0.0, 2),
                    }
                )
                group.scale_to(desired, now)
            sent = producer.sent_copy()
            rows.append(
                {
                    "t": round(now, 1),
                    "instances": len(group.in_service),
                    "ready": sum(1 for i in group.in_service if i.ready_at is not None),
                    "draining": group.draining(),
                    "backlog_seconds": None
                    if point["backlog_seconds"] is None
                    else round(point["backlog_seconds"], 3),
                    "backlog": point["backlog"],
                    "reporting": point["reporting"],
                    "ready_slots": point["ready_slots"],
                    "visible": point["visible"],
                    "seconds_per_message": point["seconds_per_message"],
                    "oldest_age": {k: round(v, 1) for k, v in records.oldest_age(sent, time.time()).items()},
                    "decision": desired - before,
                }
            )
            print(format_row(rows[-1], s), flush=True)
            boundary += s.period
            quiet_for = now - s.quiet_at
            settled = len(group.in_service) == s.policy.min_size and not group.draining()
            if quiet_for > 0 and (
                (settled and group.terminated and not sum(point["visible"].values()))
                or quiet_for > s.quiet_limit
            ):
                break
        producer.stop()
        group.wait_drains()
        final = finish(s, sqs, urls, group, records)
    finally:
        producer.stop()
        for instance in group.every:
            instance.close()
        asg.close()
        moto.stop()
    return {
        "rows": rows,
        "decisions": decisions,
        "sent": producer.sent_copy(),
        "records": records.lines,
        "terminated": group.terminated,
        "producer_errors": producer.errors,
        "workdir": str(workdir),
        **final,
    }


def finish(
    s: Settings, sqs: Any, urls: dict[str, tuple[str, str]], group: Group, records: Records
) -> dict[str, Any]:
    """Wait (bounded) for the queues to empty, stop the instances left with SIGTERM, and say
    what is left on every queue and DLQ."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]

    def left() -> dict[str, int]:
        out = {}
        for q in s.queues:
            for kind, url in zip(("", "-dlq"), urls[q.name], strict=True):
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
                out[q.name + kind] = sum(int(attrs[n]) for n in names)
        return out

    deadline = time.monotonic() + 90
    while sum(left().values()) and time.monotonic() < deadline:
        time.sleep(1)
    stopped = {}
    for instance in group.in_service:
        instance.proc.terminate()
        stopped[instance.instance_id] = instance.wait_exit(60)
    time.sleep(0.5)
    records.read()
    return {"left": left(), "stopped_at_end": stopped}


def format_row(row: dict[str, Any], s: Settings) -> str:
    queues = "  ".join(
        f"{q.name} {row['visible'][q.name]:>5} {row['oldest_age'].get(q.name, 0.0):>6.1f}s" for q in s.queues
    )
    mark = f"  {'+' if row['decision'] > 0 else ''}{row['decision']}" if row["decision"] else ""
    metric = "    none" if row["backlog_seconds"] is None else f"{row['backlog_seconds']:>7.2f}s"
    return (
        f"{row['t']:>6.1f}s ({row['t'] * COMPRESSION:>6.0f}s modelled)  {row['instances']:>2} "
        f"({row['ready']} ready, {row['draining']} draining)  backlog {metric}  {queues}{mark}"
    )


def dump(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=1, default=str))
