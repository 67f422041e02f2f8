"""The one receive retry (`poller.sqs.receive_retrying`): the first try runs outside tenacity,
and a failure still counts as attempt 1 (same waits, same log, same give-up)."""

from __future__ import annotations

from typing import Any

import pytest

from poller.errors import SqsError
from poller.sqs import receive_retrying


class FlakyReceive:
    """Fails with the given errors, in order, then returns messages."""

    def __init__(self, *errors: SqsError):
        self.errors = list(errors)
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> list[str]:
        self.calls.append(args)
        if self.errors:
            raise self.errors.pop(0)
        return ["message"]


def throttled() -> SqsError:
    return SqsError("ReceiveMessage", "ThrottlingException", "slow down", transient=True)


def test_failures_are_retried_with_backoff_and_logged_from_attempt_one():
    # GIVEN a receive that is throttled twice, then answers
    receive, slept, logged = FlakyReceive(throttled(), throttled()), [], []
    retrying = receive_retrying(
        stop=lambda: False,
        sleep=slept.append,
        before_sleep=lambda state: logged.append(state.attempt_number),
    )

    # WHEN the worker receives through the retry
    result = retrying(receive, "url", 10, 20, 30)

    # THEN the third call's messages come back, after two backoff waits logged as attempts 1 and 2
    assert result == ["message"]
    assert receive.calls == [("url", 10, 20, 30)] * 3
    assert logged == [1, 2]
    assert len(slept) == 2
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 1.5  # 0.5 * 2**(n-1), plus up to 0.5


def test_a_first_try_that_succeeds_is_the_only_call():
    # GIVEN a receive that answers at once
    receive, slept = FlakyReceive(), []

    # WHEN called through the retry
    result = receive_retrying(stop=lambda: False, sleep=slept.append)(receive, "url", 1, 0, 30)

    # THEN one call, no wait
    assert (result, len(receive.calls), slept) == (["message"], 1, [])


def test_a_permanent_error_with_max_attempts_is_raised_after_one_call():
    # GIVEN a receive from a queue that does not exist, retried only for transient errors
    missing = SqsError("ReceiveMessage", "AWS.SimpleQueueService.NonExistentQueue", "gone", transient=False)
    receive, slept = FlakyReceive(missing), []

    # WHEN called through the retry
    with pytest.raises(SqsError) as raised:
        receive_retrying(stop=lambda: False, sleep=slept.append, max_attempts=3)(receive, "url", 1, 0, 30)

    # THEN the error itself is raised after one call, without a wait
    assert raised.value is missing
    assert (len(receive.calls), slept) == (1, [])


def test_a_stop_ends_the_retry_with_the_last_error():
    # GIVEN a receive that keeps failing, and a stop requested after the first failure
    receive, slept = FlakyReceive(throttled(), throttled(), throttled()), []

    # WHEN called through the retry while stopping
    with pytest.raises(SqsError):
        receive_retrying(stop=lambda: bool(receive.calls), sleep=slept.append)(receive, "url", 1, 0, 30)

    # THEN there was one call and no wait
    assert (len(receive.calls), slept) == (1, [])
