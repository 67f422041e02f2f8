"""The few error types of sqs-poller, and the exit code each one means."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_HANDLER = 3


class PollerError(Exception):
    """Base class: a failure sqs-poller reports to the user."""

    exit_code = EXIT_FAILURE


class ConfigError(PollerError):
    """The configuration or the command line is wrong. Names the key and what is allowed."""

    exit_code = EXIT_CONFIG


class HandlerLoadError(PollerError):
    """The handler target cannot be imported or constructed."""

    exit_code = EXIT_HANDLER


class SqsError(PollerError):
    """An SQS call failed. `transient` errors are retried with backoff; others are reported."""

    def __init__(self, action: str, code: str, detail: str, transient: bool):
        super().__init__(f"SQS {action} failed: {code}: {detail}")
        self.action = action
        self.code = code
        self.transient = transient
