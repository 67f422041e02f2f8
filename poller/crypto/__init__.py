"""Envelope encryption of message bodies (AES-256-GCM under KMS or local data keys)."""

from poller.crypto.envelope import (
    ATTRIBUTE,
    Decryptor,
    Encryptor,
    build_decryptor,
    build_encryptor,
    encrypt_body,
)
from poller.crypto.keys import (
    DataKeyCache,
    KeyServiceError,
    KmsKeyProvider,
    LocalKeyring,
    create_keyring,
)

__all__ = [
    "ATTRIBUTE",
    "DataKeyCache",
    "Decryptor",
    "Encryptor",
    "KeyServiceError",
    "KmsKeyProvider",
    "LocalKeyring",
    "build_decryptor",
    "build_encryptor",
    "create_keyring",
    "encrypt_body",
]
