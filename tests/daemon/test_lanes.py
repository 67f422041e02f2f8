"""The policy that shares a worker's free slots among its queues (lanes.py `plan`): strict
priority, a probe's slot for an idle queue and no more, weighted turns, caps, no over-fetch."""

from __future__ import annotations

from poller.daemon.lanes import ACTIVE, BUSY, IDLE, Demand, plan


def demand(lane: int, priority: int = 0, state: str = BUSY, weight: int = 1, room: int = 100, out: int = 0):
    return Demand(lane, priority, weight, 10, room, out, state)


def test_strict_priority_gives_every_free_slot_to_the_busy_higher_queue():
    # GIVEN a busy high-priority queue and a busy low one, 20 free slots
    starts = plan([demand(0, priority=1), demand(1, priority=0)], 20)
    # THEN both receives go to the high one
    assert starts == [(0, 10), (0, 10)]


def test_an_idle_higher_queue_costs_the_lower_one_a_probes_slot():
    # GIVEN an empty high-priority queue (last reply empty) and a busy low one
    starts = plan([demand(0, priority=5, state=IDLE), demand(1, priority=0)], 10)
    # THEN the high one probes for one message; the low one gets the other nine at once
    assert starts == [(0, 1), (1, 9)]


def test_an_idle_queue_with_its_probe_out_asks_for_nothing_more():
    starts = plan([demand(0, priority=5, state=IDLE, out=1), demand(1)], 10)
    assert starts == [(1, 10)]


def test_weights_share_slots_among_busy_queues_of_one_priority():
    # GIVEN two busy queues of one priority, weights 3 and 1, and many turns of 10 free slots
    served = {0: 0.0, 1: 0.0}
    got = {0: 0, 1: 0}
    for _ in range(400):
        demands = [Demand(n, 0, w, 10, 10, 0, BUSY, served[n]) for n, w in ((0, 3), (1, 1))]
        for lane, ask in plan(demands, 10):
            got[lane] += ask
            served[lane] += ask / (3 if lane == 0 else 1)
    # THEN they got slots in the ratio of their weights
    assert 2.8 < got[0] / got[1] < 3.2


def test_max_concurrency_caps_a_queue_and_the_rest_goes_to_its_peers():
    starts = plan([demand(0, room=3), demand(1, state=ACTIVE)], 10)
    assert sorted(starts) == [(0, 3), (1, 7)]


def test_never_asks_for_more_than_the_free_slots():
    for free in range(0, 25):
        demands = [demand(0, priority=1, state=IDLE), demand(1, state=ACTIVE), demand(2, state=BUSY)]
        assert sum(ask for _, ask in plan(demands, free)) <= free


def test_a_queue_whose_last_reply_was_partial_keeps_one_receive_out():
    starts = plan([demand(0, state=ACTIVE, out=1)], 30)
    assert starts == []
    assert plan([demand(0, state=BUSY, out=1)], 30) == [(0, 10), (0, 10), (0, 10)]


def test_a_queue_whose_last_reply_was_partial_asks_for_no_more_than_it_brought():
    # GIVEN a high-priority queue whose last reply brought 2 (it may be empty now), a busy low one
    partial = Demand(0, 5, 1, 10, 100, 0, ACTIVE, want=2)
    # THEN its next long poll reserves 2 slots, not a batch: the low queue gets the rest
    assert plan([partial, demand(1)], 10) == [(0, 2), (1, 8)]
