"""Envelope encryption of message bodies: AES-256-GCM under a data key from KMS or a local keyring.

Wire format (version 1), base64-encoded (standard alphabet) as the SQS body::

    b"SQP1" | header length (2 bytes, big-endian) | header (compact JSON, UTF-8)
           | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

The header is ``{"e": <encrypted data key, base64>, "k": <key id>, "p": <provider>}``.
Everything before the nonce (magic, length, header) is the AES-GCM associated data, so
changing the key id, the provider or the encrypted data key fails authentication.
The message attribute ``poller.encryption`` (String) marks an encrypted body; its value
is JSON ``{"format": "SQP1", "provider": ..., "key_id": ...}`` (informational, no secret).

Key providers and the data key cache are in ``poller.crypto.keys``.

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
with backoff). ``build_encryptor`` and ``build_decryptor`` turn the ``[crypto]`` section
(``poller.config.CryptoConfig``) into the objects above.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from poller.config import CryptoConfig
from poller.crypto.keys import (
    DATA_KEY_SIZE,
    MAGIC,
    NONCE_SIZE,
    SAFE_KEY_ID,
    TAG_SIZE,
    DataKeyCache,
    KeyProvider,
    KeyUnwrapError,
    KmsKeyProvider,
    LocalKeyring,
    UnknownKeyError,
    aesgcm,
    invalid_tag,
)
from poller.message import Message, Poison

ATTRIBUTE = "poller.encryption"
_HEADER_LEN = struct.Struct(">H")
_MAX_HEADER = 8192

REASON_MALFORMED = "encrypted body is malformed"
REASON_AUTH = "authentication failed: body tampered or wrong key"
REASON_NOT_UTF8 = "decrypted body is not valid UTF-8"
REASON_NOT_ENCRYPTED = "message is not encrypted and [crypto] require_encryption is on"


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
    ciphertext = aesgcm(data_key).encrypt(nonce, plaintext, aad)
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
    return repr(value) if SAFE_KEY_ID.match(value) else "(invalid)"


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
            data = aesgcm(data_key).decrypt(envelope.nonce, envelope.ciphertext, envelope.aad)
        except invalid_tag():
            raise Poison(REASON_AUTH) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Poison(REASON_NOT_UTF8) from None


# --- from the [crypto] section ----------------------------------------------------------------


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
