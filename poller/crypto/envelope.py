"""Envelope encryption of message bodies: AES-256-GCM under a data key from KMS or a local keyring.

Wire format (version 1), base64-encoded (standard alphabet) as the SQS body::

    b"SQP1" | header length (2 bytes, big-endian) | header (compact JSON, UTF-8)
           | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

The header is ``{"e": <encrypted data key, base64>, "k": <key id>, "p": <provider>}``.
Everything before the nonce (magic, length, header) is the AES-GCM associated data, so
changing the key id, the provider or the encrypted data key fails authentication.
The message attribute ``poller.encryption`` (String) marks an encrypted body; its value
is JSON ``{"format": "SQP1", "provider": ..., "key_id": ...}`` (informational, no secret).

Providers (``KeyProvider``): ``KmsKeyProvider(key_id, client=None, region=..., endpoint_url=...)``
uses ``GenerateDataKey`` (AES_256) and ``Decrypt``; ``LocalKeyring(path, key_id=None)`` reads
a JSON keyring ``{"primary": id, "keys": {id: base64 32-byte key}}`` (``create_keyring``
writes one) and wraps data keys with AES-GCM under the named master key. Each provider
counts its calls in ``provider.calls`` (a ``collections.Counter``), so a benchmark can report
KMS calls per message.

``DataKeyCache(max_age, max_messages)`` bounds the reuse of a data key by age and by number
of messages, on both sides: the encrypting side reuses one data key, the decrypting side
remembers encrypted data key -> plaintext data key.

API::

    body, attributes = encrypt_body(plaintext, provider, cache=None)   # producers
    encryptor = Encryptor(provider, cache); encryptor.encrypt(plaintext)  # same, reusable
    decryptor = Decryptor([provider, ...], cache, require_encryption=False)
    handler_message = decryptor.decrypt_message(message)               # in the worker

``decrypt_message`` returns a copy of the message with the plaintext body (the original is
untouched: the DLQ must receive the original, encrypted body). A tampered, truncated or
malformed body, an unknown key or provider raises ``poller.Poison`` with a fixed reason that
never holds plaintext, key material or a library's exception text. A key service that is
unreachable or throttling raises ``KeyServiceError`` (a plain exception: the daemon retries
with backoff). ``CryptoConfig`` is the ``[crypto]`` section; ``build_encryptor`` and
``build_decryptor`` turn it into the objects above.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from poller.aws import aws_client, section_from_mapping
from poller.errors import ConfigError
from poller.message import Message, Poison

log = structlog.get_logger(__name__)

MAGIC = b"SQP1"
ATTRIBUTE = "poller.encryption"
NONCE_SIZE = 12
TAG_SIZE = 16
DATA_KEY_SIZE = 32
_HEADER_LEN = struct.Struct(">H")
_MAX_HEADER = 8192
_SAFE_KEY_ID = re.compile(r"^[A-Za-z0-9:/_.+=@-]{1,256}$")
_KMS_ENCRYPTION_CONTEXT = {"sqs-poller": MAGIC.decode()}

REASON_MALFORMED = "encrypted body is malformed"
REASON_AUTH = "authentication failed: body tampered or wrong key"
REASON_NOT_UTF8 = "decrypted body is not valid UTF-8"
REASON_NOT_ENCRYPTED = "message is not encrypted and [crypto] require_encryption is on"


def _aesgcm(key: bytes) -> Any:
    # cryptography costs a worker ~7 MB: load it only in processes that encrypt or decrypt.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
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
        wrapped = _aesgcm(self._keys[self.key_id]).encrypt(nonce, data_key, _wrap_aad(self.key_id))
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
            return _aesgcm(master).decrypt(nonce, wrapped, _wrap_aad(key_id))
        except _invalid_tag():
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
        if len(key) != DATA_KEY_SIZE or not _SAFE_KEY_ID.match(key_id):
            # Name the key id, never the key.
            raise ConfigError(f"crypto.keyring_path: key {key_id!r} in {path} must be base64 of 32 bytes")
        keys[key_id] = key
    primary = raw.get("primary") or next(iter(keys))
    return keys, primary


def create_keyring(path: str | os.PathLike[str], key_id: str = "local-1") -> str:
    """Write a new keyring file with one random master key (mode 0600); returns the key id."""
    if not _SAFE_KEY_ID.match(key_id):
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


# --- wire format -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    provider: str
    key_id: str
    encrypted_key: bytes = field(repr=False)
    aad: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


def _pack(provider: str, key_id: str, encrypted_key: bytes, data_key: bytes, plaintext: bytes) -> str:
    header = json.dumps(
        {"e": base64.b64encode(encrypted_key).decode(), "k": key_id, "p": provider},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    aad = MAGIC + _HEADER_LEN.pack(len(header)) + header
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = _aesgcm(data_key).encrypt(nonce, plaintext, aad)
    return base64.b64encode(aad + nonce + ciphertext).decode("ascii")


def _unpack(body: str) -> _Envelope:
    """Parse the wire format; any deviation is Poison(REASON_MALFORMED)."""
    try:
        raw = base64.b64decode(body.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Poison(REASON_MALFORMED) from None
    if raw[:3] == MAGIC[:3] and raw[:4] != MAGIC and len(raw) >= 4:
        raise Poison(f"unsupported encryption format {raw[:4].decode('ascii', 'replace')!r}")
    if raw[:4] != MAGIC or len(raw) < 6:
        raise Poison(REASON_MALFORMED)
    (header_len,) = _HEADER_LEN.unpack(raw[4:6])
    end = 6 + header_len
    if header_len == 0 or header_len > _MAX_HEADER or len(raw) < end + NONCE_SIZE + TAG_SIZE:
        raise Poison(REASON_MALFORMED)
    try:
        header = json.loads(raw[6:end].decode("utf-8"))
        provider, key_id = header["p"], header["k"]
        encrypted_key = base64.b64decode(header["e"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Poison(REASON_MALFORMED) from None
    if not (isinstance(provider, str) and isinstance(key_id, str) and encrypted_key):
        raise Poison(REASON_MALFORMED)
    return _Envelope(
        provider=provider,
        key_id=key_id,
        encrypted_key=encrypted_key,
        aad=raw[:end],
        nonce=raw[end : end + NONCE_SIZE],
        ciphertext=raw[end + NONCE_SIZE :],
    )


def _quote_id(value: str) -> str:
    """A key id or provider name fit for a reason; anything odd is not echoed."""
    return repr(value) if _SAFE_KEY_ID.match(value) else "(invalid)"


# --- encrypting ------------------------------------------------------------------------------


class Encryptor:
    """Encrypts bodies for SQS, reusing data keys through the cache."""

    def __init__(self, provider: KeyProvider, cache: DataKeyCache | None = None):
        self.provider = provider
        self.cache = cache

    def encrypt(self, plaintext: str | bytes) -> tuple[str, dict[str, dict[str, str]]]:
        """Return (body, message_attributes) ready for SendMessage."""
        if isinstance(plaintext, str):
            data = plaintext.encode("utf-8")
        else:
            data = bytes(plaintext)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("plaintext must be UTF-8: SQS message bodies are text") from None
        if self.cache is None:
            key_id, data_key, encrypted_key = self.provider.generate_data_key()
        else:
            entry = self.cache.data_key_for_encrypt(self.provider)
            key_id, data_key, encrypted_key = entry.key_id, entry.plaintext, entry.encrypted
        body = _pack(self.provider.name, key_id, encrypted_key, data_key, data)
        marker = json.dumps(
            {"format": MAGIC.decode(), "provider": self.provider.name, "key_id": key_id},
            separators=(",", ":"),
        )
        return body, {ATTRIBUTE: {"DataType": "String", "StringValue": marker}}


def encrypt_body(
    plaintext: str | bytes, provider: KeyProvider, cache: DataKeyCache | None = None
) -> tuple[str, dict[str, dict[str, str]]]:
    """Encrypt one body: returns (body, message_attributes) for SendMessage."""
    return Encryptor(provider, cache).encrypt(plaintext)


# --- decrypting ------------------------------------------------------------------------------


class Decryptor:
    """Turns an encrypted Message into one with the plaintext body, or raises Poison."""

    def __init__(
        self,
        providers: KeyProvider | Iterable[KeyProvider],
        cache: DataKeyCache | None = None,
        require_encryption: bool = False,
    ):
        if hasattr(providers, "decrypt_data_key"):
            providers = [providers]  # type: ignore[list-item]
        self.providers: dict[str, KeyProvider] = {p.name: p for p in providers}  # type: ignore[union-attr]
        self.cache = cache
        self.require_encryption = require_encryption

    def is_encrypted(self, message: Message) -> bool:
        return ATTRIBUTE in (message.message_attributes or {})

    def decrypt_message(self, message: Message) -> Message:
        """A copy of `message` with the plaintext body; unencrypted messages pass through."""
        if not self.is_encrypted(message):
            if self.require_encryption:
                raise Poison(REASON_NOT_ENCRYPTED)
            return message
        plaintext = self.decrypt_body(message.body)
        return dataclasses.replace(message, body=plaintext)

    def decrypt_body(self, body: str) -> str:
        envelope = _unpack(body)
        provider = self.providers.get(envelope.provider)
        if provider is None:
            raise Poison(f"unknown key provider {_quote_id(envelope.provider)}")
        try:
            if self.cache is None:
                data_key = provider.decrypt_data_key(envelope.key_id, envelope.encrypted_key)
            else:
                data_key = self.cache.data_key_for_decrypt(provider, envelope.key_id, envelope.encrypted_key)
        except UnknownKeyError:
            raise Poison(f"unknown key id {_quote_id(envelope.key_id)}") from None
        except KeyUnwrapError:
            raise Poison(REASON_AUTH) from None
        if len(data_key) != DATA_KEY_SIZE:
            raise Poison(REASON_AUTH)
        try:
            data = _aesgcm(data_key).decrypt(envelope.nonce, envelope.ciphertext, envelope.aad)
        except _invalid_tag():
            raise Poison(REASON_AUTH) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Poison(REASON_NOT_UTF8) from None


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CryptoConfig:
    """The ``[crypto]`` section. Validated on construction; errors name the key."""

    enabled: bool = False
    provider: str = "kms"  # kms | local
    key_id: str = ""  # KMS key id/ARN/alias to encrypt with; local: overrides the primary
    keyring_path: str = ""  # local provider only
    region: str = ""  # KMS region; "" = the SDK's resolution
    endpoint_url: str = ""  # a local KMS-compatible endpoint, for tests
    require_encryption: bool = False
    data_key_max_age: float = 300.0  # seconds, 1..86400
    data_key_max_messages: int = 1000  # 1..1_000_000

    def __post_init__(self) -> None:
        if self.provider not in ("kms", "local"):
            raise ConfigError(f"crypto.provider: must be 'kms' or 'local', got {self.provider!r}")
        if self.enabled and self.provider == "local" and not self.keyring_path:
            raise ConfigError("crypto.keyring_path: required when crypto.provider = 'local'")
        if not 1 <= self.data_key_max_age <= 86400:
            raise ConfigError(
                f"crypto.data_key_max_age: must be within 1..86400 seconds, got {self.data_key_max_age}"
            )
        if not 1 <= self.data_key_max_messages <= 1_000_000:
            raise ConfigError(
                f"crypto.data_key_max_messages: must be within 1..1000000, got {self.data_key_max_messages}"
            )
        if self.require_encryption and not self.enabled:
            raise ConfigError("crypto.require_encryption: needs crypto.enabled = true")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> CryptoConfig:
        return section_from_mapping(cls, "crypto", section)


def build_provider(cfg: CryptoConfig) -> KeyProvider:
    if cfg.provider == "local":
        return LocalKeyring(cfg.keyring_path, key_id=cfg.key_id or None)
    return KmsKeyProvider(cfg.key_id, region=cfg.region, endpoint_url=cfg.endpoint_url)


def build_cache(cfg: CryptoConfig) -> DataKeyCache:
    return DataKeyCache(max_age=cfg.data_key_max_age, max_messages=cfg.data_key_max_messages)


def build_encryptor(cfg: CryptoConfig, provider: KeyProvider | None = None) -> Encryptor:
    return Encryptor(provider or build_provider(cfg), build_cache(cfg))


def build_decryptor(cfg: CryptoConfig, provider: KeyProvider | None = None) -> Decryptor | None:
    """The worker's decryptor, or None when ``[crypto]`` is disabled."""
    if not cfg.enabled:
        return None
    return Decryptor(
        provider or build_provider(cfg), build_cache(cfg), require_encryption=cfg.require_encryption
    )
