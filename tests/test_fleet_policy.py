"""The fleet drill's target tracking rule (bench/fleet/policy.py): what the Auto Scaling stand-in
decides on a sequence of the policy's metric, one datapoint a period."""

from __future__ import annotations

from bench.fleet.policy import Policy, decide

POLICY = Policy(target=10.0, min_size=1, max_size=4, warmup=20.0, cooldown=50.0, out_periods=3, in_periods=5)
WARM = -100.0  # launched long before: past its warm-up


def run(
    history: list[float | None], launches: list[float], now: float = 0.0, last_scale_in: float = -1e9
) -> int:
    return decide(POLICY, history, launches, last_scale_in, now)


def test_scales_out_only_after_the_evaluation_periods_breach():
    # GIVEN one warm instance and a metric three times the target
    # WHEN it has breached for fewer periods than the alarm needs
    # THEN nothing changes; on the third breaching period the group goes to ceil(1 x 30 / 10)
    assert run([30.0], [WARM]) == 1
    assert run([30.0, 30.0], [WARM]) == 1
    assert run([5.0, 30.0, 30.0], [WARM]) == 1
    assert run([30.0, 30.0, 30.0], [WARM]) == 3


def test_a_missing_datapoint_breaks_the_breach():
    # GIVEN a breach with a period of no data in it
    # WHEN the rule is applied
    # THEN it does not scale out (missing data breaches neither alarm)
    assert run([30.0, None, 30.0], [WARM]) == 1
    assert run([30.0, 30.0, None], [WARM]) == 1


def test_instances_warming_up_are_capacity_but_not_the_metrics_capacity():
    # GIVEN one warm instance and two launched 5 s ago (still warming up), the metric still high
    launches = [WARM, -5.0, -5.0]
    # WHEN the breach continues at three times the target
    # THEN no more instances are launched for the same breach: 1 warm x 3 = 3, already there
    assert run([30.0, 30.0, 30.0], launches) == 3
    # AND a breach five times the target adds only the difference to ceil(1 x 5)
    assert run([50.0, 50.0, 50.0], launches) == 4


def test_scale_out_is_capped_at_max_size():
    # GIVEN one warm instance and a metric ten times the target
    # WHEN it breaches for the evaluation periods
    # THEN the group goes to max_size, not ten
    assert run([100.0] * 3, [WARM]) == 4


def test_scales_in_after_the_low_periods_and_never_below_min_size():
    # GIVEN three warm instances and a metric of 0 (nothing waiting)
    # WHEN it has been low for fewer periods than the scale-in alarm needs
    # THEN nothing changes; once it has, the group shrinks to min_size
    assert run([0.0] * 4, [WARM] * 3) == 3
    assert run([20.0] + [0.0] * 4, [WARM] * 3) == 3
    assert run([0.0] * 5, [WARM] * 3) == 1


def test_scales_in_proportionally_to_the_metric():
    # GIVEN four warm instances at a metric of 4.5 (below 0.9 x target) for five periods
    # WHEN the rule is applied
    # THEN the group goes to ceil(4 x 4.5 / 10) = 2
    assert run([4.5] * 5, [WARM] * 4) == 2


def test_no_scale_in_just_under_the_target():
    # GIVEN a metric at 95% of the target (above the scale-in threshold of 90%)
    # WHEN it stays there
    # THEN the group keeps its size
    assert run([9.5] * 10, [WARM] * 3) == 3


def test_no_scale_in_while_an_instance_warms_up():
    # GIVEN a long low metric, and one instance launched 10 s ago (warm-up 20 s)
    # WHEN the rule is applied
    # THEN the group keeps its size until that instance is past its warm-up
    launches = [WARM, WARM, -10.0]
    assert run([0.0] * 5, launches) == 3
    assert run([0.0] * 5, launches, now=15.0) == 1


def test_no_scale_in_within_the_cooldown_of_the_last_one():
    # GIVEN a long low metric and a scale-in 30 s ago (cooldown 50 s)
    # WHEN the rule is applied
    # THEN it waits for the cooldown, then scales in
    assert run([0.0] * 5, [WARM] * 2, now=0.0, last_scale_in=-30.0) == 2
    assert run([0.0] * 5, [WARM] * 2, now=25.0, last_scale_in=-30.0) == 1


def test_a_group_outside_its_bounds_is_brought_within_them():
    # GIVEN no datapoint yet and a group below min_size / above max_size
    # WHEN the rule is applied
    # THEN the desired capacity is within [min_size, max_size]
    assert run([], []) == 1
    assert run([None], [WARM] * 6) == 4
