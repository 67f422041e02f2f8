"""Named secrets, loaded once per process and refreshed on a TTL or on demand (SIGHUP).

Sources (both optional, both may be used):

- SSM Parameter Store: every parameter under each path in ``ssm_paths``
  (``GetParametersByPath``, recursive, ``WithDecryption``, all pages). A parameter is named
  by its path relative to the configured path: ``/mailbox/prod/legacy/token`` under
  ``/mailbox/prod`` is ``legacy/token``.
- Secrets Manager: ``secrets_manager = {name = "secret id or ARN"}``, ``GetSecretValue``'s
  ``SecretString`` under that name.

    secrets = Secrets(ssm_paths=["/mailbox/prod"], secrets_manager={"api": "prod/api"}, ttl=300)
    secrets.refresh()            # load now (first load: raises SecretsError if it fails)
    secrets.refresh_if_stale()   # cheap; reloads when older than ttl (call it from the loop)
    secrets["legacy/token"]; secrets.get_json("api")

``SecretsStep`` runs the refreshes on a thread of the worker's own, off the message path.
``Secrets`` is a read-only mapping that reads lock-free from a snapshot swapped in whole on
each successful refresh; ``secrets.snapshot()`` returns that snapshot, for reading several
related values (a user and its password) from one generation. A failed
refresh keeps the previous values, logs ``secrets_refresh_failed`` with the error code only,
and is tried again after ``min(ttl, 30)`` seconds. ``repr``/``str`` show names, never values,
so logging the object (or a handler's options holding it) leaks nothing.

The worker hands the object to a handler class as ``options["secrets"]``;
``poller.handlers.http.Forward`` resolves ``${secret:NAME}`` in its headers from it on every
request. ``build_secrets(cfg)`` returns a loaded ``Secrets`` for the ``[secrets]`` section
(or None when it names no source).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import structlog

from poller.aws import aws_client
from poller.config import SecretsConfig
from poller.errors import ConfigError, PollerError

log = structlog.get_logger(__name__)

_RETRY_FAILED_AFTER = 30.0


class SecretsError(PollerError):
    """Secrets could not be loaded. Names the source and the error code, never a value."""

    def __init__(self, source: str, code: str):
        super().__init__(f"cannot load secrets from {source}: {code}")
        self.source = source
        self.code = code


class Secrets(Mapping[str, str]):
    """A read-only, redacted mapping of secret name -> value, refreshed in place."""

    def __init__(
        self,
        ssm_paths: Sequence[str] = (),
        secrets_manager: Mapping[str, str] | None = None,
        ttl: float = 300.0,
        ssm_client: Any = None,
        secretsmanager_client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ssm_paths = tuple(_normalise_path(p) for p in ssm_paths)
        self.secret_ids = dict(secrets_manager or {})
        self.ttl = float(ttl)
        self._ssm = ssm_client
        self._secretsmanager = secretsmanager_client
        self._region = region or None
        self._endpoint_url = endpoint_url or None
        self._clock = clock
        self._values: dict[str, str] = {}
        self._loaded = False
        self._next_refresh = 0.0
        self._refresh_lock = threading.Lock()
        self.loaded_at: float | None = None
        self.refreshes = 0
        self.failures = 0

    # --- the mapping: values out, never in a repr ---------------------------------------------

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"no secret named {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets(names={sorted(self._values)!r}, values=<redacted>)"

    __str__ = __repr__

    def snapshot(self) -> Mapping[str, str]:
        """The current values as one read-only generation (not refreshed under you)."""
        return MappingProxyType(self._values)

    def get_json(self, name: str) -> Any:
        """The named secret parsed as JSON (Secrets Manager secrets often hold an object)."""
        try:
            return json.loads(self[name])
        except ValueError:
            raise ValueError(f"secret {name!r} is not JSON") from None

    # --- loading ------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Load every source now. True on success; on failure keep the old values.

        The first load raises SecretsError instead: a process must not start without them.
        """
        with self._refresh_lock:
            return self._refresh_locked()

    def refresh_if_stale(self) -> bool:
        """Refresh when the TTL has passed (or a failed refresh is due a retry). True if it did.

        Cheap when fresh. Once loaded it never waits: if another thread is already
        refreshing, it returns False and the current values stay in use.
        """
        if self._loaded and self._clock() < self._next_refresh:
            return False
        if not self._refresh_lock.acquire(blocking=not self._loaded):
            return False
        try:
            if self._loaded and self._clock() < self._next_refresh:
                return False  # another thread refreshed while we waited
            return self._refresh_locked()
        finally:
            self._refresh_lock.release()

    def seconds_to_refresh(self, at_most: float = 3600.0) -> float:
        """How long until the next refresh is due (for the refresh thread's sleep)."""
        return max(0.5, min(at_most, self._next_refresh - self._clock()))

    def _refresh_locked(self) -> bool:
        try:
            values = self._load()
        except SecretsError as exc:
            self.failures += 1
            self._next_refresh = self._clock() + min(self.ttl or _RETRY_FAILED_AFTER, _RETRY_FAILED_AFTER)
            if not self._loaded:
                raise
            log.warning("secrets_refresh_failed", error=exc.code, source=exc.source)
            return False
        self._values = values  # one reference swap: readers see old or new, never a mix
        self._loaded = True
        self.refreshes += 1
        self.loaded_at = self._clock()
        self._next_refresh = self.loaded_at + self.ttl if self.ttl else float("inf")
        log.info("secrets_loaded", count=len(values), refreshes=self.refreshes)
        return True

    def _load(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for path in self.ssm_paths:
            for name, value in self._load_ssm_path(path):
                _put(values, name, value, f"ssm:{path}")
        for name, secret_id in self.secret_ids.items():
            _put(values, name, self._load_secret(secret_id), f"secretsmanager:{secret_id}")
        return values

    def _load_ssm_path(self, path: str) -> list[tuple[str, str]]:
        source = f"ssm:{path}"
        found = []
        with _translate_errors(source):
            paginator = self._client("ssm").get_paginator("get_parameters_by_path")
            for page in paginator.paginate(Path=path.rstrip("/") or "/", Recursive=True, WithDecryption=True):
                for parameter in page.get("Parameters", []):
                    name = parameter["Name"]
                    relative = name[len(path) :] if name.startswith(path) else name.lstrip("/")
                    found.append((relative, parameter["Value"]))
        return found

    def _load_secret(self, secret_id: str) -> str:
        source = f"secretsmanager:{secret_id}"
        with _translate_errors(source):
            response = self._client("secretsmanager").get_secret_value(SecretId=secret_id)
        if "SecretString" not in response:
            raise SecretsError(source, "BinarySecretUnsupported")
        return response["SecretString"]

    def _client(self, service: str) -> Any:
        attr = "_ssm" if service == "ssm" else "_secretsmanager"
        if getattr(self, attr) is None:
            setattr(self, attr, aws_client(service, self._region, self._endpoint_url))
        return getattr(self, attr)


@contextmanager
def _translate_errors(source: str) -> Iterator[None]:
    """botocore errors -> SecretsError(source, code); the exception text (may echo input) is dropped."""
    try:
        yield
    except SecretsError:
        raise
    except Exception as exc:
        response = getattr(exc, "response", None)
        code = type(exc).__name__
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code") or code)
        raise SecretsError(source, code) from None


def _put(values: dict[str, str], name: str, value: str, source: str) -> None:
    if name in values:
        raise SecretsError(source, f"DuplicateName {name!r}")
    values[name] = value


def _normalise_path(path: str) -> str:
    if not path.startswith("/"):
        raise ConfigError(f"secrets.ssm_paths: {path!r} must start with '/'")
    return path if path.endswith("/") else path + "/"


def build_secrets(cfg: SecretsConfig, **clients: Any) -> Secrets | None:
    """Loaded secrets for this process (raises SecretsError), or None if no source is set."""
    if not cfg.enabled:
        return None
    secrets = Secrets(
        cfg.ssm_paths,
        cfg.secrets_manager,
        ttl=cfg.ttl,
        region=cfg.region,
        endpoint_url=cfg.endpoint_url,
        **clients,
    )
    secrets.refresh()
    return secrets


class SecretsStep:
    """Keeps the worker's secrets fresh from a thread of its own: no message waits on a refresh,
    and a handler's timeout never includes one."""

    def __init__(self, secrets: Secrets):
        self.secrets = secrets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secrets-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.secrets.seconds_to_refresh()):
            self.secrets.refresh_if_stale()
