"""The command line: `sqs-poller run|check|demo|send|dlq ...` (poller.cli.main)."""

from poller.cli.main import main

__all__ = ["main"]
