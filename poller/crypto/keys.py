"""Where data keys come from, and how long one is reused.

Providers (``KeyProvider``): ``KmsKeyProvider(key_id, client=None, region=..., endpoint_url=...)``
uses ``GenerateDataKey`` (AES_256) and ``Decrypt``; ``LocalKeyring(path, key_id=None)`` reads
a JSON keyring ``{"primary": id, "keys": {id: base64 32-byte key}}`` (``create_keyring``
writes one) and wraps data keys with AES-GCM under the named master key. Each provider
counts its calls in ``provider.calls`` (a ``collections.Counter``), so a benchmark can report
KMS calls per message.

``DataKeyCache(max_age, max_messages)`` bounds the reuse of a data key by age and by number
of messages, on both sides: the encrypting side reuses one data key, the decrypting side
remembers encrypted data key -> plaintext data key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from poller.aws import aws_client
from poller.errors import ConfigError

log = structlog.get_logger(__name__)

MAGIC = b"SQP1"
NONCE_SIZE = 12
TAG_SIZE = 16
DATA_KEY_SIZE = 32
SAFE_KEY_ID = re.compile(r"^[A-Za-z0-9:/_.+=@-]{1,256}$")
_KMS_ENCRYPTION_CONTEXT = {"sqs-poller": MAGIC.decode()}


def aesgcm(key: bytes) -> Any:
    # cryptography costs a worker ~7 MB: load it only in processes that encrypt or decrypt.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


class KeyServiceError(Exception):
    """The key service could not be reached or refused for a transient reason: retry later."""


class UnknownKeyError(Exception):
    """A provider does not know the key id (the message names it; key ids are not secret)."""


class KeyUnwrapError(Exception):
    """The encrypted data key does not decrypt under the named key: tampered or wrong key."""


class KeyProvider(Protocol):
    """Where data keys come from. ``name`` is written into the header as the provider."""

    name: str
    key_id: str
    calls: Counter[str]

    def generate_data_key(self) -> tuple[str, bytes, bytes]:
        """A fresh data key: (key id, plaintext key, encrypted key)."""
        ...

    def decrypt_data_key(self, key_id: str, encrypted_key: bytes) -> bytes:
        """The plaintext data key, or UnknownKeyError / KeyUnwrapError / KeyServiceError."""
        ...


# --- providers -------------------------------------------------------------------------------


class LocalKeyring:
    """Master keys from a JSON file, for development and the demo. Not for production."""

    name = "local"

    def __init__(self, path: str | os.PathLike[str], key_id: str | None = None):
        self.path = Path(path)
        self._keys, primary = _read_keyring(self.path)
        self.key_id = key_id or primary
        if self.key_id not in self._keys:
            raise ConfigError(f"crypto.key_id: key {self.key_id!r} is not in {self.path}")
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"LocalKeyring(path={str(self.path)!r}, key_id={self.key_id!r})"

    def generate_data_key(self) -> tuple[str, bytes, bytes]:
        self.calls["generate_data_key"] += 1
        data_key = os.urandom(DATA_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        wrapped = aesgcm(self._keys[self.key_id]).encrypt(nonce, data_key, _wrap_aad(self.key_id))
        return self.key_id, data_key, nonce + wrapped

    def decrypt_data_key(self, key_id: str, encrypted_key: bytes) -> bytes:
        self.calls["decrypt"] += 1
        master = self._keys.get(key_id)
        if master is None:
            raise UnknownKeyError(key_id)
        nonce, wrapped = encrypted_key[:NONCE_SIZE], encrypted_key[NONCE_SIZE:]
        if len(nonce) != NONCE_SIZE or len(wrapped) != DATA_KEY_SIZE + TAG_SIZE:
            raise KeyUnwrapError(key_id)
        try:
            return aesgcm(master).decrypt(nonce, wrapped, _wrap_aad(key_id))
        except invalid_tag():
            raise KeyUnwrapError(key_id) from None


def _wrap_aad(key_id: str) -> bytes:
    return b"SQP1-local-wrap:" + key_id.encode()


def _read_keyring(path: Path) -> tuple[dict[str, bytes], str]:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"crypto.keyring_path: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"crypto.keyring_path: {path} is not JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), dict) or not raw["keys"]:
        raise ConfigError(f'crypto.keyring_path: {path} needs {{"primary": id, "keys": {{...}}}}')
    keys: dict[str, bytes] = {}
    for key_id, encoded in raw["keys"].items():
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError):
            key = b""
        if len(key) != DATA_KEY_SIZE or not SAFE_KEY_ID.match(key_id):
            # Name the key id, never the key.
            raise ConfigError(f"crypto.keyring_path: key {key_id!r} in {path} must be base64 of 32 bytes")
        keys[key_id] = key
    primary = raw.get("primary") or next(iter(keys))
    return keys, primary


def create_keyring(path: str | os.PathLike[str], key_id: str = "local-1") -> str:
    """Write a new keyring file with one random master key (mode 0600); returns the key id."""
    if not SAFE_KEY_ID.match(key_id):
        raise ValueError(f"key id {key_id!r} may only hold letters, digits and :/_.+=@-")
    content = {
        "primary": key_id,
        "keys": {key_id: base64.b64encode(os.urandom(DATA_KEY_SIZE)).decode()},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=2)
    return key_id


class KmsKeyProvider:
    """Data keys from AWS KMS. The boto3 client is created on first use, in that process."""

    name = "kms"

    def __init__(
        self,
        key_id: str = "",
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ):
        self.key_id = key_id
        self._client = client
        self._region = region or None
        self._endpoint_url = endpoint_url or None
        self._client_lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"KmsKeyProvider(key_id={self.key_id!r})"

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = aws_client("kms", self._region, self._endpoint_url)
            return self._client

    def generate_data_key(self) -> tuple[str, bytes, bytes]:
        if not self.key_id:
            raise ConfigError("crypto.key_id: a KMS key id, ARN or alias is needed to encrypt")
        self.calls["generate_data_key"] += 1
        response = self._call(
            "GenerateDataKey",
            lambda: self.client.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=_KMS_ENCRYPTION_CONTEXT
            ),
            self.key_id,
        )
        return response["KeyId"], response["Plaintext"], response["CiphertextBlob"]

    def decrypt_data_key(self, key_id: str, encrypted_key: bytes) -> bytes:
        self.calls["decrypt"] += 1
        response = self._call(
            "Decrypt",
            lambda: self.client.decrypt(
                KeyId=key_id,
                CiphertextBlob=encrypted_key,
                EncryptionContext=_KMS_ENCRYPTION_CONTEXT,
            ),
            key_id,
        )
        return response["Plaintext"]

    def _call(self, action: str, call: Callable[[], dict[str, Any]], key_id: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code in ("NotFoundException",):
                raise UnknownKeyError(key_id) from None
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise KeyUnwrapError(key_id) from None
            if code in ("ValidationException", "InvalidKeyUsageException") and action == "Decrypt":
                raise KeyUnwrapError(key_id) from None
            # Throttling, access denied, disabled keys: an operator's problem, not the message's.
            log.warning("kms_call_failed", action=action, error=code)
            raise KeyServiceError(f"KMS {action} failed: {code}") from None
        except BotoCoreError as exc:
            log.warning("kms_call_failed", action=action, error=type(exc).__name__)
            raise KeyServiceError(f"KMS {action} failed: {type(exc).__name__}") from None


# --- data key cache --------------------------------------------------------------------------


@dataclass
class _CachedKey:
    key_id: str
    plaintext: bytes = field(repr=False)
    encrypted: bytes = field(repr=False)
    created: float
    uses: int = 0


class DataKeyCache:
    """Reuse data keys for at most ``max_age`` seconds and ``max_messages`` messages each.

    Thread-safe. Concurrent misses on the same key cost one provider call, not one per
    thread; a slow provider call for one key does not hold up hits on the others.
    """

    def __init__(
        self,
        max_age: float = 300.0,
        max_messages: int = 1000,
        max_entries: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_age <= 0 or max_messages < 1 or max_entries < 1:
            raise ValueError("max_age, max_messages and max_entries must be positive")
        self.max_age = max_age
        self.max_messages = max_messages
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], _CachedKey] = OrderedDict()
        self._loading: dict[tuple[Any, ...], threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return (
            f"DataKeyCache(max_age={self.max_age}, max_messages={self.max_messages}, "
            f"hits={self.hits}, misses={self.misses})"
        )

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    def data_key_for_encrypt(self, provider: KeyProvider) -> _CachedKey:
        """The data key to encrypt the next message with (a fresh one when the last is spent)."""

        def generate() -> _CachedKey:
            key_id, plaintext, encrypted = provider.generate_data_key()
            return _CachedKey(key_id, plaintext, encrypted, self._clock())

        return self._get_or_load(("encrypt", provider.name, provider.key_id), generate)

    def data_key_for_decrypt(self, provider: KeyProvider, key_id: str, encrypted: bytes) -> bytes:
        """The plaintext of an encrypted data key, from the cache or the provider."""

        def unwrap() -> _CachedKey:
            plaintext = provider.decrypt_data_key(key_id, encrypted)
            return _CachedKey(key_id, plaintext, encrypted, self._clock())

        return self._get_or_load(("decrypt", provider.name, key_id, encrypted), unwrap).plaintext

    def _get_or_load(self, slot: tuple[Any, ...], load: Callable[[], _CachedKey]) -> _CachedKey:
        with self._lock:
            if (entry := self._take(slot)) is not None:
                return entry
            loader = self._loading.setdefault(slot, threading.Lock())
        with loader:  # one provider call per slot; other slots stay available meanwhile
            with self._lock:
                if (entry := self._take(slot)) is not None:
                    return entry
            try:
                entry = load()
            except BaseException:
                with self._lock:
                    self._loading.pop(slot, None)
                raise
            with self._lock:
                self.misses += 1
                entry.uses += 1
                self._entries[slot] = entry
                self._loading.pop(slot, None)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                return entry

    def _take(self, slot: tuple[Any, ...]) -> _CachedKey | None:
        """A usable cached entry, counted as one use; drops a spent one. Holds self._lock."""
        entry = self._entries.get(slot)
        if entry is None:
            return None
        if entry.uses >= self.max_messages or self._clock() - entry.created >= self.max_age:
            del self._entries[slot]
            return None
        self.hits += 1
        entry.uses += 1
        self._entries.move_to_end(slot)
        return entry
