"""Built-in handlers, usable as ``[handler] target``.

- ``poller.handlers.http:Forward``: POST each (decrypted) body to an HTTP endpoint, like
  Elastic Beanstalk's worker daemon. Options: see ``poller.handlers.http``.
"""
