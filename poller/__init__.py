"""sqs-poller: a long-lived, multiprocess Amazon SQS poller daemon."""

from poller.message import Message, Poison, Retry

__version__ = "0.1.0"
__all__ = ["Message", "Poison", "Retry", "__version__"]
