"""The decrypt step: an envelope-encrypted body becomes plaintext for the handler; the worker
keeps the original, so the DLQ always receives the encrypted body."""

from __future__ import annotations

from poller.config import CryptoConfig


class DecryptStep:
    def __init__(self, decryptor: object):
        self.before = decryptor.decrypt_message  # type: ignore[attr-defined]


def build_decrypt(cfg: CryptoConfig) -> DecryptStep | None:
    if not cfg.enabled:
        return None
    from poller.crypto.envelope import build_decryptor

    return DecryptStep(build_decryptor(cfg))
