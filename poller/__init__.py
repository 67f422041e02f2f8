"""sqs-poller: a long-lived, multiprocess Amazon SQS poller daemon.

The handler contract: `Message` in; return to delete it, raise `Retry`, `Poison` or
`Unavailable` to say otherwise (see DESIGN "Handler contract").
"""

from poller.message import Message, Poison, Retry, Unavailable

__version__ = "0.2.0.dev0"
__all__ = ["Message", "Poison", "Retry", "Unavailable", "__version__"]
