"""The target tracking rule of `aws_autoscaling_policy.backlog_seconds`, as a pure decision.

Given the policy's metric, one datapoint a period (None: no data), the launch times of the
instances in the group and the time of the last scale-in, `decide` returns the desired capacity:
- scale out when the last `out_periods` datapoints are all above the target: to
  ceil(warm instances x metric / target), where only instances past their warm-up count as the
  capacity that produced the metric, and instances still warming up count towards the desired
  capacity (no second launch for the same breach);
- scale in when the last `in_periods` datapoints are all below `in_ratio` x target, no instance
  is warming up and the scale-in cooldown since the last scale-in is over: to
  ceil(instances x metric / target), never below `min_size`;
- always within [min_size, max_size]."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    target: float  # target_backlog_seconds
    min_size: int
    max_size: int
    warmup: float  # instance_warmup_seconds
    cooldown: float  # scale-in cooldown
    out_periods: int = 3  # target tracking's scale-out alarm: 3 breaching 1-minute datapoints
    in_periods: int = 15  # its scale-in alarm: 15 datapoints below in_ratio x target
    in_ratio: float = 0.9


def _breaching(
    history: Sequence[float | None], periods: int, above: float | None, below: float | None
) -> bool:
    recent = history[-periods:]
    if len(recent) < periods or any(v is None for v in recent):
        return False  # missing data breaches neither alarm
    if above is not None:
        return all(v > above for v in recent)  # type: ignore[operator]
    return all(v < below for v in recent)  # type: ignore[operator]


def decide(
    policy: Policy,
    history: Sequence[float | None],
    launches: Sequence[float],
    last_scale_in: float,
    now: float,
) -> int:
    """The desired capacity after the latest datapoint (history[-1])."""
    current = len(launches)
    bounded = min(policy.max_size, max(policy.min_size, current))
    if not history or history[-1] is None:
        return bounded
    metric = history[-1]
    warm = sum(1 for t in launches if now - t >= policy.warmup)
    if _breaching(history, policy.out_periods, policy.target, None):
        wanted = math.ceil(max(1, warm) * metric / policy.target)
        return min(policy.max_size, max(bounded, wanted))
    in_cooldown = now - last_scale_in < policy.cooldown
    if (
        warm == current
        and not in_cooldown
        and _breaching(history, policy.in_periods, None, policy.in_ratio * policy.target)
    ):
        wanted = math.ceil(current * metric / policy.target)
        return max(policy.min_size, min(bounded, wanted))
    return bounded
