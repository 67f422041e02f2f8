"""The drill's checks, its summary and its plot."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fleet.drill import COMPRESSION, DELIVERY, Settings

SCALE_OUT_WITHIN = 60.0  # modelled (AWS) seconds from the spike's start to the scale-out decision

C = COMPRESSION
MODELS = f"""What the stand-in models (time compression {C}: a drill second is {C} s modelled):
- the policy's metric exactly as aws_autoscaling_policy.backlog_seconds states it: on 10-s
  periods, Average(BacklogSeconds) / FILL(Sum(Slots), min_size x slots) / samples a period, from
  the daemons' own emf_scaling lines (read from their stdout). Each daemon samples its queues'
  ApproximateNumberOfMessages every 10 s itself and sums visible x seconds per message; a period
  where no daemon published BacklogSeconds is missing data;
- delivery: a period's datapoint is read {DELIVERY:g} s after the period ends, {10 + DELIVERY:g} s after
  the daemons' sample (journald, exporter, agent, EMF: about 10-15 s on AWS, not measured);
- target tracking: scale out after 3 breaching 10-s periods to ceil(warm instances x metric /
  target), instances warming up count towards capacity but not as the metric's capacity,
  warm-up 120 s, scale in after 15 periods (150 s) below 0.9 x target, scale-in cooldown 300 s,
  min/max, oldest instance terminated first (AWS does not document its alarms' datapoints at a
  10-s period: the 1-minute rule's counts carried over, docs/operations.md "Speed");
- scale-in through the termination lifecycle hook: the instance's IMDS stand-in says Terminated,
  the daemon drains and completes the lifecycle action (an Auto Scaling API stand-in records it),
  the stand-in waits for it to exit (bounded by the hook's timeout).
What it does not model: CloudWatch's alarm evaluation details (datapoint alignment, late data),
target tracking's own capacity arithmetic, real boot times (a daemon here is ready in seconds,
an instance in a minute or two), AZ balancing, Spot, the real Auto Scaling API. The oldest
message age is that of the oldest message sent and not yet handled (SQS's figure leaves out
messages in flight)."""


def checks(result: dict[str, Any], s: Settings) -> list[tuple[str, bool, str]]:
    sent, lines = result["sent"], result["records"]
    ended = {line["id"] for line in lines if line["phase"] == "end"}
    lost = [i for i in sent if i not in ended]
    left = {k: v for k, v in result["left"].items() if v}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if line["phase"] == "end":
            runs[line["id"]].append(line)
    repeats = [r for rs in runs.values() for r in sorted(rs, key=lambda r: r["t"])[1:]]
    bad_repeats = [r for r in repeats if r["receive_count"] <= 1]
    spike_at = s.base_seconds
    outs = [d for d in result["decisions"] if d["to"] > d["from"] and d["t"] >= spike_at]
    out_after = (outs[0]["t"] - spike_at) * COMPRESSION if outs else None
    terminated = result["terminated"]
    unclean = [
        t["instance"]
        for t in terminated
        if t["exit_code"] != 0 or t["lifecycle_completed"] != ["CONTINUE"] or t["grace_expired"]
    ]
    unfinished = _unfinished(lines, {t["instance"] for t in terminated})
    end_codes = {k: v for k, v in result["stopped_at_end"].items() if v != 0}
    return [
        (
            "nothing lost",
            not lost and not left,
            f"{len(sent)} sent, {len(lost)} never handled, left on queues: {left or 0}",
        ),
        (
            "nothing handled twice but SQS redeliveries",
            not bad_repeats,
            f"{len(repeats)} repeated handlings, {len(bad_repeats)} of them with receive count 1",
        ),
        (
            f"scale-out decided within {SCALE_OUT_WITHIN:.0f} s (modelled) of the spike",
            out_after is not None and out_after <= SCALE_OUT_WITHIN,
            "never"
            if out_after is None
            else f"{out_after:.1f} s modelled after ({out_after / COMPRESSION:.1f} s of drill time)",
        ),
        (
            "scale-in drained cleanly",
            bool(terminated) and not unclean and not unfinished,
            f"{len(terminated)} terminated through the hook; unclean: {unclean or 'none'}; "
            f"started but not finished: {unfinished or 'none'}",
        ),
        (
            "instances left stopped cleanly",
            not end_codes and not result["producer_errors"],
            f"exit codes {result['stopped_at_end']}; producer errors {len(result['producer_errors'])}",
        ),
    ]


def _unfinished(lines: list[dict[str, Any]], instances: set[str]) -> list[str]:
    """Handlings a terminated instance started and never finished: (body id, receive count)."""
    starts = {
        (r["id"], r["receive_count"]) for r in lines if r["phase"] == "start" and r["instance"] in instances
    }
    ends = {
        (r["id"], r["receive_count"]) for r in lines if r["phase"] == "end" and r["instance"] in instances
    }
    return sorted(f"{i}#{n}" for i, n in starts - ends)


def figures(result: dict[str, Any], s: Settings) -> dict[str, Any]:
    """What fleet.json keeps: the settings, the rows, the decisions, the drains and the checks,
    with counts instead of every message."""
    ends = [r for r in result["records"] if r["phase"] == "end"]
    by_queue: dict[str, int] = defaultdict(int)
    for queue, _ in result["sent"].values():
        by_queue[queue] += 1
    return {
        "time_compression": COMPRESSION,
        "delivery_s": DELIVERY,
        "first_breach_read_at_s": first_breach(result, s),
        "period_s": s.period,
        "policy": asdict(s.policy),
        "queues": [asdict(q) for q in s.queues],
        "spike": {
            "queue": s.spike_queue,
            "factor": s.spike_factor,
            "at_s": s.base_seconds,
            "for_s": s.spike_seconds,
        },
        "concurrency": s.concurrency,
        "sent": dict(by_queue),
        "handled": len(ends),
        "handled_ids": len({r["id"] for r in ends}),
        "redelivered": sum(1 for r in ends if r["receive_count"] > 1),
        "first_handled_late_s": sorted(round(w, 1) for w in late_firsts(result)),
        **{k: result[k] for k in ("rows", "decisions", "terminated", "left", "stopped_at_end", "checks")},
    }


def first_breach(result: dict[str, Any], s: Settings) -> float | None:
    """Drill time the first datapoint above the target after the spike's start was read."""
    for row in result["rows"]:
        if row["t"] >= s.base_seconds and (row["backlog_seconds"] or 0.0) > s.policy.target:
            return row["t"]
    return None


def summary(result: dict[str, Any]) -> str:
    steps = ", ".join(
        f"{d['from']}->{d['to']} at {d['t']:.0f} s (backlog {d['backlog_seconds']:.1f} s)"
        for d in result["decisions"]
    )
    drains = "; ".join(
        f"{t['instance']} exit {t['exit_code']}, drained in {t['drain_seconds']} s, "
        f"lifecycle {t['lifecycle_completed']}, {t['heartbeats']} heartbeats"
        for t in result["terminated"]
    )
    ends = [r for r in result["records"] if r["phase"] == "end"]
    late = late_firsts(result)
    breach = result.get("first_breach")
    return (
        f"scaling: {steps or 'none'}\n"
        f"metric above the target first read at {breach} s (drill time)\ndrains: {drains or 'none'}\n"
        f"handled: {len(ends)} handler runs of {len(result['sent'])} messages sent; "
        f"{len(late)} first handled on a later receive, "
        f"{sum(1 for w in late if w >= HIDDEN)} of them {HIDDEN:.0f} s or more after they were sent "
        "(hidden for the visibility timeout by a receive nobody held: a long poll a drain abandoned)"
    )


HIDDEN = 25.0  # seconds: near the queues' 30-s visibility timeout


def late_firsts(result: dict[str, Any]) -> list[float]:
    """Seconds from send to first handling of every message first handled on a receive after
    its first (released by a drain, or received by a poll whose process had gone)."""
    first: dict[str, dict[str, Any]] = {}
    for line in result["records"]:
        if line["phase"] == "start" and (line["id"] not in first or line["t"] < first[line["id"]]["t"]):
            first[line["id"]] = line
    return [
        line["t"] - result["sent"][i][1]
        for i, line in first.items()
        if line["receive_count"] > 1 and i in result["sent"]
    ]


def plot(result: dict[str, Any], s: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    axes[0].step(t, [r["instances"] for r in rows], where="post", label="in the group")
    axes[0].step(t, [r["ready"] for r in rows], where="post", label="ready", linestyle="--")
    axes[0].set_ylabel("instances")
    axes[0].set_ylim(0, s.policy.max_size + 0.5)
    metric = [float("nan") if r["backlog_seconds"] is None else r["backlog_seconds"] for r in rows]
    axes[1].plot(t, metric, marker=".", label="backlog seconds per slot")
    axes[1].axhline(s.policy.target, color="grey", linestyle=":", label="target")
    axes[1].set_ylabel("seconds")
    for q in s.queues:
        axes[2].plot(t, [r["oldest_age"].get(q.name, 0.0) for r in rows], label=f"{q.name} ({q.seconds:g} s)")
    axes[2].set_ylabel("oldest message age (s)")
    axes[2].set_xlabel(f"drill seconds (x{COMPRESSION} = modelled); a datapoint at the time it was read")
    for ax in axes:
        ax.axvspan(s.base_seconds, s.base_seconds + s.spike_seconds, color="orange", alpha=0.15)
        ax.axvline(s.quiet_at, color="grey", alpha=0.4)
        ax.legend(loc="upper right")
    axes[0].set_title(f"fleet drill: 10x spike on '{s.spike_queue}' (shaded), quiet after the line")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
