"""Example handler: "create mailbox" for a slow legacy mail system behind HTTP.

The pipeline: an API encrypts a request (``poller.crypto.envelope.encrypt_body``) and enqueues it;
sqs-poller decrypts it (``[crypto]``) and, with ``[idempotency]``, makes sure a redelivered
request is not applied twice; this handler validates the payload, transforms it into the
legacy system's form-encoded format, and POSTs it through ``poller.handlers.http.Forward``.

    [handler]
    target = "examples.mailbox:CreateMailbox"
    [handler.options]
    url = "http://127.0.0.1:8080/mailboxes"     # examples/legacy_stub.py stands in for it
    timeout = 10
    headers = { Authorization = "Bearer ${secret:legacy/token}" }   # with a [secrets] section

The payload (JSON object)::

    {"username": "alice", "domain": "example.com", "quota_mb": 2048,
     "display_name": "Alice Liddell", "aliases": ["al", "alice.l"]}   # last two optional

Bad input is ``Poison`` with a reason naming the field and the rule, never the value (the
body was encrypted for a reason). The legacy answer follows ``Forward``'s policy: 2xx done,
refused/timeouts/502/503/504 ``Unavailable`` (the breaker pauses polling), 429 with Retry-After
later, other 5xx with backoff, other 4xx poison.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from poller import Message, Poison
from poller.handlers.http import Forward

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_QUOTA_MB = 102_400
MAX_ALIASES = 10
REQUIRED = ("username", "domain", "quota_mb")
OPTIONAL = ("display_name", "aliases")


@dataclass(frozen=True)
class MailboxRequest:
    username: str
    domain: str
    quota_mb: int
    display_name: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.username}@{self.domain}"


def parse_request(body: str) -> MailboxRequest:
    """Validate a create-mailbox payload. Raises Poison naming the field, never its value."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise Poison("mailbox request is not JSON") from None
    if not isinstance(payload, dict):
        raise Poison("mailbox request must be a JSON object")
    return validate_request(payload)


def validate_request(payload: Mapping[str, Any]) -> MailboxRequest:
    missing = [name for name in REQUIRED if name not in payload]
    if missing:
        raise Poison(f"mailbox request is missing {', '.join(missing)}")
    unknown = sorted(set(payload) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise Poison(f"mailbox request has unknown fields: {', '.join(unknown)}")
    username, domain, quota = payload["username"], payload["domain"], payload["quota_mb"]
    if not isinstance(username, str) or not USERNAME.match(username):
        raise Poison("username must be 1-32 of a-z 0-9 . _ - and start with a letter")
    if not isinstance(domain, str) or not DOMAIN.match(domain):
        raise Poison("domain must be a lower-case DNS name")
    if isinstance(quota, bool) or not isinstance(quota, int) or not 1 <= quota <= MAX_QUOTA_MB:
        raise Poison(f"quota_mb must be an integer within 1..{MAX_QUOTA_MB}")
    display_name = payload.get("display_name", "")
    if not isinstance(display_name, str) or len(display_name) > 64 or not display_name.isprintable():
        raise Poison("display_name must be printable text of at most 64 characters")
    aliases = payload.get("aliases", [])
    if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
        raise Poison(f"aliases must be a list of at most {MAX_ALIASES} names")
    if not all(isinstance(a, str) and USERNAME.match(a) for a in aliases):
        raise Poison("each alias must be 1-32 of a-z 0-9 . _ - and start with a letter")
    if username in aliases or len(set(aliases)) != len(aliases):
        raise Poison("aliases must be distinct and differ from username")
    return MailboxRequest(username, domain, quota, display_name.strip(), tuple(aliases))


def to_legacy_form(request: MailboxRequest) -> str:
    """The legacy system's format: form-encoded, upper-case keys, quota in KiB."""
    fields = {
        "ACTION": "CREATE",
        "MBX_USER": request.username,
        "MBX_DOMAIN": request.domain,
        "MBX_ADDR": request.address,
        "QUOTA_KB": str(request.quota_mb * 1024),
    }
    if request.display_name:
        fields["DISPLAY"] = request.display_name
    if request.aliases:
        fields["ALIASES"] = ",".join(f"{a}@{request.domain}" for a in request.aliases)
    return urlencode(fields)


class CreateMailbox:
    """Handler class: one instance (and one HTTP connection pool) per worker process."""

    def __init__(self, options: Mapping[str, Any]):
        self.forward = Forward({**options, "content_type": "application/x-www-form-urlencoded"})

    def handle(self, message: Message) -> None:
        request = parse_request(message.body)
        self.forward.forward(message, to_legacy_form(request))

    def close(self) -> None:
        self.forward.close()


# Demo traffic: (payload, what should happen). Poison ones end in the DLQ with the reason.
SAMPLE_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"username": "alice", "domain": "example.com", "quota_mb": 2048}, "created"),
    (
        {
            "username": "bob",
            "domain": "example.com",
            "quota_mb": 512,
            "display_name": "Bob Builder",
            "aliases": ["bobby"],
        },
        "created",
    ),
    ({"username": "carol", "domain": "example.org", "quota_mb": 100}, "created"),
    ({"username": "Dave!", "domain": "example.com", "quota_mb": 100}, "poison"),
    ({"username": "erin", "domain": "example.com"}, "poison"),
    ({"username": "frank", "domain": "example.com", "quota_mb": 10**9}, "poison"),
]
