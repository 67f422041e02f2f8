"""The timing bounds several parts must agree on (the SQS client, the worker's receive loop and
the supervisor's health window), in one place and free of imports."""

CONNECT_TIMEOUT = 5  # seconds to connect to the SQS endpoint
READ_SLACK = 10  # seconds a long poll may take beyond WaitTimeSeconds before it counts as hung
RECEIVE_BACKOFF_MAX = 10.0  # seconds between receive attempts while SQS cannot be reached


def health_window(wait_time_seconds: int) -> float:
    """The longest a healthy worker loop goes between beats: one hung long poll, then a backoff."""
    return wait_time_seconds + READ_SLACK + CONNECT_TIMEOUT + RECEIVE_BACKOFF_MAX + 5
