"""The timing bounds several parts must agree on (the SQS client, the worker's receive loop and
the supervisor's health window), in one place and free of imports."""

CONNECT_TIMEOUT = 5  # seconds to connect to the SQS endpoint
READ_SLACK = 10  # seconds a long poll may take beyond WaitTimeSeconds before it counts as hung
RECEIVE_BACKOFF_MAX = 10.0  # seconds between receive attempts while SQS cannot be reached


# A worker's main thread beats at least once a second: it never waits on a call itself.
BEAT_STALE = 15.0  # seconds without a beat: the worker is not healthy (/healthz 503)
UNRESPONSIVE_AFTER = 30.0  # seconds without a beat: the supervisor kills it as wedged
