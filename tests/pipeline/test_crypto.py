"""Envelope encryption: round trips, the wire format's integrity, caches, KMS through moto."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time

import boto3
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from poller import Message, Poison
from poller.crypto import (
    ATTRIBUTE,
    DataKeyCache,
    Decryptor,
    Encryptor,
    KeyServiceError,
    KmsKeyProvider,
    LocalKeyring,
    build_decryptor,
    build_encryptor,
    create_keyring,
    encrypt_body,
)
from poller.crypto.envelope import REASON_AUTH, REASON_MALFORMED, REASON_NOT_ENCRYPTED
from poller.errors import ConfigError
from tests.configs import section
from tests.messages import message

SECRET_TEXT = '{"username": "alice", "password": "hunter2-PLAINTEXT-MARKER"}'


def make_message(body: str, attributes: dict | None = None) -> Message:
    return message(body, message_attributes=attributes or {})


def encrypted_message(plaintext: str, provider, cache=None) -> Message:
    body, attrs = encrypt_body(plaintext, provider, cache)
    return make_message(body, attrs)


@pytest.fixture
def keyring(tmp_path) -> LocalKeyring:
    path = tmp_path / "keyring.json"
    create_keyring(path, key_id="dev-1")
    return LocalKeyring(path)


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def kms_key(aws_env) -> str:
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(Description="sqs-poller test")["KeyMetadata"]
    kms.create_alias(AliasName="alias/sqs-poller-test", TargetKeyId=key["KeyId"])
    return key["Arn"]


def assert_no_leak(reason: str, *secrets: bytes | str) -> None:
    for secret in (SECRET_TEXT, "hunter2", *secrets):
        if isinstance(secret, bytes):
            assert base64.b64encode(secret).decode() not in reason
            assert secret.hex() not in reason
        else:
            assert secret not in reason


# --- round trips -----------------------------------------------------------------------------


def test_local_round_trip_returns_a_copy_with_plaintext(keyring):
    # GIVEN a body encrypted under the local keyring
    message = encrypted_message(SECRET_TEXT, keyring)
    # WHEN the worker's decryptor runs
    decrypted = Decryptor(keyring).decrypt_message(message)
    # THEN the handler's copy has the plaintext and the original stays encrypted (for the DLQ)
    assert decrypted.body == SECRET_TEXT
    assert decrypted.json()["username"] == "alice"
    assert message.body != SECRET_TEXT and "hunter2" not in message.body
    assert decrypted.message_id == message.message_id
    assert decrypted.receipt_handle == "rh"


def test_body_is_text_and_marked_by_attribute_without_secrets(keyring):
    # GIVEN / WHEN a body is encrypted
    body, attrs = encrypt_body(SECRET_TEXT, keyring)
    # THEN the body is ASCII base64 starting with the magic, and the attribute names the key only
    raw = base64.b64decode(body, validate=True)
    assert raw.startswith(b"SQP1")
    marker = attrs[ATTRIBUTE]
    assert marker["DataType"] == "String"
    assert json.loads(marker["StringValue"]) == {
        "format": "SQP1",
        "provider": "local",
        "key_id": "dev-1",
    }


def test_unicode_and_bytes_plaintext(keyring):
    # GIVEN non-ASCII text given as str and as UTF-8 bytes
    text = "Grüße, 世界 🎉"
    dec = Decryptor(keyring)
    # WHEN both are encrypted and decrypted
    # THEN both come back as the same str
    assert dec.decrypt_message(encrypted_message(text, keyring)).body == text
    body, attrs = encrypt_body(text.encode(), keyring)
    assert dec.decrypt_message(make_message(body, attrs)).body == text


def test_non_utf8_bytes_are_refused_at_encryption(keyring):
    # GIVEN bytes that are not UTF-8 WHEN encrypted THEN a ValueError (SQS bodies are text)
    with pytest.raises(ValueError, match="UTF-8"):
        encrypt_body(b"\xff\xfe", keyring)


def test_each_encryption_uses_a_fresh_nonce(keyring):
    # GIVEN one cached data key WHEN the same plaintext is encrypted twice
    enc = Encryptor(keyring, DataKeyCache())
    first, _ = enc.encrypt("same")
    second, _ = enc.encrypt("same")
    # THEN the ciphertexts differ
    assert first != second


def test_unencrypted_messages_pass_through_unless_required(keyring):
    # GIVEN a plain message
    plain = make_message("hello")
    # WHEN decrypted without and with require_encryption
    # THEN it passes through unchanged, or is poison with a fixed reason
    assert Decryptor(keyring).decrypt_message(plain) is plain
    with pytest.raises(Poison) as info:
        Decryptor(keyring, require_encryption=True).decrypt_message(plain)
    assert info.value.reason == REASON_NOT_ENCRYPTED


def test_keyring_rotation_old_keys_still_decrypt(tmp_path):
    # GIVEN a keyring with two keys, and a message encrypted under the old primary
    path = tmp_path / "k.json"
    create_keyring(path, key_id="old")
    content = json.loads(path.read_text())
    content["keys"]["new"] = base64.b64encode(b"\x01" * 32).decode()
    path.write_text(json.dumps(content))
    old_message = encrypted_message("from before", LocalKeyring(path))
    # WHEN the primary becomes "new"
    content["primary"] = "new"
    path.write_text(json.dumps(content))
    rotated = LocalKeyring(path)
    # THEN new messages use "new" and old ones still decrypt
    body, attrs = encrypt_body("after", rotated)
    assert json.loads(attrs[ATTRIBUTE]["StringValue"])["key_id"] == "new"
    dec = Decryptor(rotated)
    assert dec.decrypt_message(old_message).body == "from before"
    assert dec.decrypt_message(make_message(body, attrs)).body == "after"


def test_keyring_file_is_private_and_errors_name_no_key(tmp_path):
    # GIVEN a keyring written by create_keyring
    path = tmp_path / "k.json"
    create_keyring(path)
    # THEN only the owner can read it
    assert path.stat().st_mode & 0o777 == 0o600
    # AND a bad key is reported by id, without its value
    path.write_text(json.dumps({"primary": "a", "keys": {"a": "c2hvcnQta2V5"}}))
    with pytest.raises(ConfigError) as info:
        LocalKeyring(path)
    assert "'a'" in str(info.value) and "c2hvcnQta2V5" not in str(info.value)
    with pytest.raises(ConfigError, match="crypto.keyring_path"):
        LocalKeyring(tmp_path / "missing.json")
    create_keyring(path, key_id="x")
    with pytest.raises(ConfigError, match="crypto.key_id"):
        LocalKeyring(path, key_id="y")


# --- poison: tampered, truncated, wrong key, malformed ---------------------------------------


def _raw(message: Message) -> bytes:
    return base64.b64decode(message.body)


def _with_raw(message: Message, raw: bytes) -> Message:
    return make_message(base64.b64encode(raw).decode(), message.message_attributes)


def test_every_single_byte_tamper_is_poison_without_plaintext(keyring):
    # GIVEN an encrypted message
    message = encrypted_message(SECRET_TEXT, keyring)
    raw = _raw(message)
    dec = Decryptor(keyring, DataKeyCache())
    # WHEN any one byte (magic, header, nonce, ciphertext, tag) is flipped
    reasons = set()
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        with pytest.raises(Poison) as info:
            dec.decrypt_message(_with_raw(message, bytes(tampered)))
        reasons.add(info.value.reason)
        assert_no_leak(info.value.reason)
    # THEN each is poison, and the reasons are from a small fixed set
    assert REASON_AUTH in reasons
    assert all(
        r in (REASON_AUTH, REASON_MALFORMED) or r.startswith(("unknown key", "unsupported encryption format"))
        for r in reasons
    ), reasons


def test_every_truncation_is_poison(keyring):
    # GIVEN an encrypted message
    message = encrypted_message(SECRET_TEXT, keyring)
    raw = _raw(message)
    dec = Decryptor(keyring)
    # WHEN it is cut at any length THEN it is poison: malformed or failed authentication
    for length in range(len(raw)):
        with pytest.raises(Poison) as info:
            dec.decrypt_message(_with_raw(message, raw[:length]))
        assert info.value.reason in (REASON_MALFORMED, REASON_AUTH)


def test_header_fields_are_authenticated(keyring, tmp_path):
    # GIVEN a keyring with a second key, and a message under the first
    path = tmp_path / "two.json"
    two = {"primary": "dev-1", "keys": {"dev-1": None, "dev-2": None}}
    two["keys"]["dev-1"] = json.loads(keyring.path.read_text())["keys"]["dev-1"]
    two["keys"]["dev-2"] = base64.b64encode(b"\x02" * 32).decode()
    path.write_text(json.dumps(two))
    ring = LocalKeyring(path)
    message = encrypted_message(SECRET_TEXT, ring)
    raw = _raw(message)
    (hlen,) = struct.unpack(">H", raw[4:6])
    header = json.loads(raw[6 : 6 + hlen])
    rest = raw[6 + hlen :]
    # WHEN the header names the other (known) key id, re-serialised with a valid length
    header["k"] = "dev-2"
    new_header = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    forged = b"SQP1" + struct.pack(">H", len(new_header)) + new_header + rest
    # THEN authentication fails
    with pytest.raises(Poison) as info:
        Decryptor(ring).decrypt_message(_with_raw(message, forged))
    assert info.value.reason == REASON_AUTH


def test_wrong_key_with_same_id_is_authentication_failure(tmp_path):
    # GIVEN two keyrings that both call their key "dev-1"
    create_keyring(tmp_path / "a.json", key_id="dev-1")
    create_keyring(tmp_path / "b.json", key_id="dev-1")
    producer, consumer = LocalKeyring(tmp_path / "a.json"), LocalKeyring(tmp_path / "b.json")
    # WHEN the consumer decrypts the producer's message
    with pytest.raises(Poison) as info:
        Decryptor(consumer).decrypt_message(encrypted_message(SECRET_TEXT, producer))
    # THEN it is poison, and the reason holds neither plaintext nor key material
    assert info.value.reason == REASON_AUTH
    assert_no_leak(info.value.reason, consumer._keys["dev-1"], producer._keys["dev-1"])


def test_unknown_key_id_and_provider_are_named(tmp_path, keyring):
    # GIVEN a message under a key the consumer's keyring does not have
    create_keyring(tmp_path / "other.json", key_id="other-7")
    message = encrypted_message("x", LocalKeyring(tmp_path / "other.json"))
    # WHEN decrypted THEN poison names the key id
    with pytest.raises(Poison) as info:
        Decryptor(keyring).decrypt_message(message)
    assert info.value.reason == "unknown key id 'other-7'"
    # AND a provider the consumer lacks is named too
    with pytest.raises(Poison) as info:
        Decryptor([], None).decrypt_message(message)
    assert info.value.reason == "unknown key provider 'local'"


def test_hostile_key_id_is_not_echoed(keyring):
    # GIVEN a forged header whose key id carries text
    header = json.dumps({"e": "AAAA", "k": "secret plaintext here!", "p": "local"}).encode()
    raw = b"SQP1" + struct.pack(">H", len(header)) + header + b"\x00" * 40
    message = make_message(base64.b64encode(raw).decode(), {ATTRIBUTE: {"DataType": "String"}})
    # WHEN decrypted THEN the reason does not repeat it
    with pytest.raises(Poison) as info:
        Decryptor(keyring).decrypt_message(message)
    assert info.value.reason == "unknown key id (invalid)"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not base64 !!!",
        SECRET_TEXT,
        base64.b64encode(b"XXXX\x00\x05hello" + b"\x00" * 40).decode(),
        base64.b64encode(b"SQP1\x00\x05hello" + b"\x00" * 40).decode(),
        base64.b64encode(b"SQP1\x00\x02{}" + b"\x00" * 40).decode(),
        base64.b64encode(b"SQP1\xff\xff").decode(),
    ],
)
def test_malformed_envelopes_are_poison_without_echo(keyring, body):
    # GIVEN a message marked encrypted whose body is not a valid envelope
    message = make_message(body, {ATTRIBUTE: {"DataType": "String", "StringValue": "{}"}})
    # WHEN decrypted THEN poison with the fixed reason, never the body
    with pytest.raises(Poison) as info:
        Decryptor(keyring).decrypt_message(message)
    assert info.value.reason == REASON_MALFORMED
    assert_no_leak(info.value.reason)


def test_future_format_version_is_named(keyring):
    # GIVEN a body of a newer format WHEN decrypted THEN poison names the format
    message = make_message(base64.b64encode(b"SQP2" + b"\x00" * 64).decode(), {ATTRIBUTE: {}})
    with pytest.raises(Poison) as info:
        Decryptor(keyring).decrypt_message(message)
    assert info.value.reason == "unsupported encryption format 'SQP2'"


def test_poison_does_not_chain_library_exceptions(keyring):
    # GIVEN a tampered message
    raw = bytearray(_raw(encrypted_message(SECRET_TEXT, keyring)))
    raw[-1] ^= 0xFF
    # WHEN decryption fails THEN no cause/context is attached for a traceback to print
    try:
        Decryptor(keyring).decrypt_message(_with_raw(make_message("", {ATTRIBUTE: {}}), raw))
    except Poison as exc:
        assert exc.__cause__ is None and exc.__suppress_context__
    else:
        pytest.fail("tampered body decrypted")


def test_nothing_secret_is_logged(keyring, tmp_path):
    # GIVEN captured structlog output, a good and a tampered message
    good = encrypted_message(SECRET_TEXT, keyring)
    raw = bytearray(_raw(good))
    raw[-3] ^= 0x10
    dec = Decryptor(keyring, DataKeyCache())
    with structlog.testing.capture_logs() as logs:
        dec.decrypt_message(good)
        with pytest.raises(Poison):
            dec.decrypt_message(_with_raw(good, bytes(raw)))
    # THEN no log entry holds plaintext or the key
    text = repr(logs) + repr(dec) + repr(dec.cache) + repr(keyring)
    assert_no_leak(text, keyring._keys["dev-1"])


# --- data key cache --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_encrypt_cache_reuses_a_data_key_up_to_max_messages(keyring):
    # GIVEN a cache allowing 10 messages per data key
    enc = Encryptor(keyring, DataKeyCache(max_age=3600, max_messages=10))
    # WHEN 25 messages are encrypted
    for i in range(25):
        enc.encrypt(f"msg {i}")
    # THEN the provider generated 3 data keys
    assert keyring.calls["generate_data_key"] == 3


def test_encrypt_cache_expires_by_age(keyring):
    # GIVEN a cache of 60 seconds
    clock = FakeClock()
    enc = Encryptor(keyring, DataKeyCache(max_age=60, max_messages=1000, clock=clock))
    # WHEN messages are encrypted before and after 60 seconds
    enc.encrypt("a")
    clock.now += 59
    enc.encrypt("b")
    clock.now += 2
    enc.encrypt("c")
    # THEN a second data key was generated only after expiry
    assert keyring.calls["generate_data_key"] == 2


def test_without_cache_every_message_pays(keyring):
    # GIVEN no cache WHEN 5 messages are encrypted and decrypted
    dec = Decryptor(keyring)
    for i in range(5):
        dec.decrypt_message(encrypted_message(str(i), keyring))
    # THEN 5 generate and 5 decrypt calls
    assert keyring.calls == {"generate_data_key": 5, "decrypt": 5}


def test_decrypt_cache_hits_and_bounds(keyring):
    # GIVEN 100 messages encrypted with one data key
    enc = Encryptor(keyring, DataKeyCache(max_age=3600, max_messages=1000))
    messages = [make_message(*enc.encrypt(f"m{i}")) for i in range(100)]
    clock = FakeClock()
    cache = DataKeyCache(max_age=60, max_messages=40, clock=clock)
    dec = Decryptor(keyring, cache)
    # WHEN they are decrypted
    bodies = [dec.decrypt_message(m).body for m in messages]
    # THEN they all decrypt, with one unwrap per 40 messages
    assert bodies == [f"m{i}" for i in range(100)]
    assert keyring.calls["decrypt"] == 3
    assert cache.hits == 97 and cache.misses == 3
    # AND after max_age the key is unwrapped again
    clock.now += 61
    dec.decrypt_message(messages[0])
    assert keyring.calls["decrypt"] == 4


def test_decrypt_cache_is_bounded_in_entries(keyring):
    # GIVEN a cache of 2 entries and 3 distinct data keys
    cache = DataKeyCache(max_entries=2)
    dec = Decryptor(keyring, cache)
    messages = [encrypted_message(str(i), keyring) for i in range(3)]
    # WHEN all three are decrypted, then the first again
    for m in messages:
        dec.decrypt_message(m)
    dec.decrypt_message(messages[0])
    # THEN the first had been evicted (4 unwraps) and the cache holds 2
    assert keyring.calls["decrypt"] == 4
    assert cache.stats()["entries"] == 2


def test_tampered_messages_do_not_poison_the_cache(keyring):
    # GIVEN a cached good data key
    cache = DataKeyCache()
    enc = Encryptor(keyring, DataKeyCache())
    good = make_message(*enc.encrypt(SECRET_TEXT))
    dec = Decryptor(keyring, cache)
    dec.decrypt_message(good)
    # WHEN a tampered copy fails THEN the good one still decrypts
    raw = bytearray(_raw(good))
    raw[-1] ^= 1
    with pytest.raises(Poison):
        dec.decrypt_message(_with_raw(good, bytes(raw)))
    assert dec.decrypt_message(good).body == SECRET_TEXT


class SlowKeyring:
    """Wraps a keyring: unwrapping the key named `slow` takes a while; counts calls."""

    name = "local"

    def __init__(self, inner: LocalKeyring, slow: str, delay: float = 0.5):
        self.inner, self.slow, self.delay = inner, slow, delay
        self.key_id = inner.key_id
        self.calls = inner.calls

    def generate_data_key(self):
        return self.inner.generate_data_key()

    def decrypt_data_key(self, key_id, encrypted_key):
        if key_id == self.slow:
            time.sleep(self.delay)
        return self.inner.decrypt_data_key(key_id, encrypted_key)


def _two_key_ring(tmp_path) -> LocalKeyring:
    path = tmp_path / "two.json"
    create_keyring(path, key_id="fast")
    content = json.loads(path.read_text())
    content["keys"]["slow"] = base64.b64encode(b"\x07" * 32).decode()
    path.write_text(json.dumps(content))
    return LocalKeyring(path)


def test_concurrent_misses_on_one_key_cost_one_unwrap(tmp_path):
    # GIVEN a slow key and eight threads decrypting messages under the same data key
    ring = _two_key_ring(tmp_path)
    enc = Encryptor(LocalKeyring(ring.path, key_id="slow"), DataKeyCache())
    messages = [make_message(*enc.encrypt(f"m{i}")) for i in range(8)]
    provider = SlowKeyring(ring, slow="slow", delay=0.3)
    dec = Decryptor(provider, DataKeyCache())
    barrier = threading.Barrier(8)
    bodies = []

    def decrypt(message):
        barrier.wait()
        bodies.append(dec.decrypt_message(message).body)

    threads = [threading.Thread(target=decrypt, args=(m,)) for m in messages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # THEN all decrypted and the provider unwrapped the data key once
    assert sorted(bodies) == sorted(f"m{i}" for i in range(8))
    assert provider.calls["decrypt"] == 1


def test_a_slow_unwrap_does_not_hold_up_cached_keys(tmp_path):
    # GIVEN a cached data key for "fast", and a message under "slow" (1 s to unwrap)
    ring = _two_key_ring(tmp_path)
    fast_msg = encrypted_message("fast one", LocalKeyring(ring.path, key_id="fast"))
    slow_msg = encrypted_message("slow one", LocalKeyring(ring.path, key_id="slow"))
    dec = Decryptor(SlowKeyring(ring, slow="slow", delay=1.0), DataKeyCache())
    dec.decrypt_message(fast_msg)
    # WHEN the slow one is being unwrapped in another thread
    slow = threading.Thread(target=dec.decrypt_message, args=(slow_msg,))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    body = dec.decrypt_message(fast_msg).body
    # THEN the cached key still answers at once
    assert body == "fast one" and time.monotonic() - started < 0.5
    slow.join(5)


# --- KMS through moto ------------------------------------------------------------------------


def test_kms_round_trip_by_alias(kms_key):
    # GIVEN a KMS provider addressed by alias, created lazily
    provider = KmsKeyProvider("alias/sqs-poller-test", region="us-east-1")
    # WHEN a message is encrypted and decrypted by a separate consumer provider
    message = encrypted_message(SECRET_TEXT, provider)
    consumer = KmsKeyProvider(region="us-east-1")
    decrypted = Decryptor(consumer).decrypt_message(message)
    # THEN it round trips and the header names the key ARN
    assert decrypted.body == SECRET_TEXT
    assert json.loads(message.message_attributes[ATTRIBUTE]["StringValue"])["key_id"] == kms_key


def test_kms_calls_per_message_with_caches(kms_key):
    # GIVEN producer and consumer caches of 100 messages per data key
    producer = KmsKeyProvider(kms_key, region="us-east-1")
    consumer = KmsKeyProvider(region="us-east-1")
    enc = Encryptor(producer, DataKeyCache(max_age=300, max_messages=100))
    dec = Decryptor(consumer, DataKeyCache(max_age=300, max_messages=100))
    # WHEN 500 messages go through
    for i in range(500):
        assert dec.decrypt_message(make_message(*enc.encrypt(f"payload {i}"))).body == (f"payload {i}")
    # THEN KMS saw 5 GenerateDataKey and 5 Decrypt calls: 0.02 calls per message
    total = sum(producer.calls.values()) + sum(consumer.calls.values())
    assert producer.calls["generate_data_key"] == 5
    assert consumer.calls["decrypt"] == 5
    assert total / 500 == pytest.approx(0.02)


def test_kms_tampered_encrypted_data_key_is_poison(kms_key):
    # GIVEN a KMS-encrypted message whose encrypted data key is altered in the header
    provider = KmsKeyProvider(kms_key, region="us-east-1")
    message = encrypted_message(SECRET_TEXT, provider)
    raw = _raw(message)
    (hlen,) = struct.unpack(">H", raw[4:6])
    header = json.loads(raw[6 : 6 + hlen])
    edk = bytearray(base64.b64decode(header["e"]))
    edk[-1] ^= 1
    header["e"] = base64.b64encode(bytes(edk)).decode()
    new_header = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    forged = b"SQP1" + struct.pack(">H", len(new_header)) + new_header + raw[6 + hlen :]
    # WHEN decrypted THEN KMS refuses it and it is poison
    with pytest.raises(Poison) as info:
        Decryptor(provider).decrypt_message(_with_raw(message, forged))
    assert info.value.reason == REASON_AUTH


def test_kms_unknown_key_is_poison(aws_env):
    # GIVEN a message naming a KMS key this account does not have
    raw_key = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    header = json.dumps(
        {"e": base64.b64encode(b"\x01" * 64).decode(), "k": raw_key, "p": "kms"},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    raw = b"SQP1" + struct.pack(">H", len(header)) + header + b"\x00" * 40
    # WHEN decrypted THEN poison names the key
    with pytest.raises(Poison) as info:
        Decryptor(KmsKeyProvider(region="us-east-1")).decrypt_message(
            make_message(base64.b64encode(raw).decode(), {ATTRIBUTE: {}})
        )
    assert info.value.reason == f"unknown key id '{raw_key}'"


def test_kms_unreachable_is_retryable_not_poison(monkeypatch):
    # GIVEN a KMS endpoint nobody listens on
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    provider = KmsKeyProvider("alias/x", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    # WHEN a data key is needed THEN a plain, retryable KeyServiceError names the error class
    with pytest.raises(KeyServiceError, match="KMS GenerateDataKey failed: EndpointConnectionError"):
        encrypt_body("x", provider)


def test_kms_provider_needs_a_key_to_encrypt():
    # GIVEN a KMS provider without key id WHEN encrypting THEN a config error names the key
    with pytest.raises(ConfigError, match="crypto.key_id"):
        encrypt_body("x", KmsKeyProvider())


# --- config and factories --------------------------------------------------------------------


def test_config_validation_names_the_key():
    # GIVEN / WHEN invalid [crypto] sections THEN errors name the key
    with pytest.raises(ConfigError, match="crypto.provider"):
        section("crypto", {"provider": "vault"})
    with pytest.raises(ConfigError, match="crypto.keyring_path"):
        section("crypto", {"enabled": True, "provider": "local"})
    with pytest.raises(ConfigError, match="crypto.data_key_max_age"):
        section("crypto", {"data_key_max_age": 0})
    with pytest.raises(ConfigError, match="crypto.data_key_max_messages"):
        section("crypto", {"data_key_max_messages": 0})
    with pytest.raises(ConfigError, match="crypto.require_encryption"):
        section("crypto", {"require_encryption": True})
    with pytest.raises(ConfigError, match="crypto.colour"):
        section("crypto", {"colour": "blue"})


def test_factories_build_working_pair(tmp_path):
    # GIVEN a [crypto] section for a local keyring
    path = tmp_path / "k.json"
    create_keyring(path)
    cfg = section(
        "crypto",
        {
            "enabled": True,
            "provider": "local",
            "keyring_path": str(path),
            "require_encryption": True,
        },
    )
    # WHEN an encryptor and a decryptor are built from it
    enc, dec = build_encryptor(cfg), build_decryptor(cfg)
    # THEN they interoperate and the decryptor enforces encryption
    assert dec.decrypt_message(make_message(*enc.encrypt("hi"))).body == "hi"
    with pytest.raises(Poison):
        dec.decrypt_message(make_message("plain"))
    # AND a disabled section builds no decryptor
    assert build_decryptor(section("crypto")) is None


# --- properties ------------------------------------------------------------------------------

_PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY_SETTINGS
@given(text=st.text(max_size=2000))
def test_property_any_text_round_trips(keyring, text):
    # GIVEN any text WHEN encrypted and decrypted THEN it comes back unchanged
    body, attrs = encrypt_body(text, keyring)
    assert Decryptor(keyring).decrypt_message(make_message(body, attrs)).body == text


@_PROPERTY_SETTINGS
@given(
    body=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
)
def test_property_arbitrary_bodies_only_ever_poison(keyring, body):
    # GIVEN any body marked encrypted WHEN decrypted THEN the only failure is Poison
    message = make_message(body, {ATTRIBUTE: {"DataType": "String", "StringValue": "{}"}})
    with pytest.raises(Poison):
        Decryptor(keyring).decrypt_message(message)


@_PROPERTY_SETTINGS
@given(data=st.data())
def test_property_any_edit_of_a_valid_envelope_is_poison_without_plaintext(keyring, data):
    # GIVEN a valid envelope
    body, attrs = encrypt_body(SECRET_TEXT, keyring)
    raw = bytearray(base64.b64decode(body))
    # WHEN some bytes are replaced, inserted or deleted
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if edit == "replace":
            raw[index] = byte if byte != raw[index] else (byte + 1) % 256
        elif edit == "insert":
            raw.insert(index, byte)
        else:
            del raw[index]
    edited = base64.b64encode(bytes(raw)).decode()
    if edited == body:
        return
    # THEN it is poison, and the reason holds no plaintext
    with pytest.raises(Poison) as info:
        Decryptor(keyring).decrypt_message(make_message(edited, attrs))
    assert_no_leak(info.value.reason)


# --- the daemon end to end ------------------------------------------------------------------


def test_daemon_decrypts_and_dead_letters_bad_envelopes_without_plaintext(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    from tests.conftest import queue_total, receive_all, wait_until, write_config

    # GIVEN a keyring, one good encrypted message, and tampered, truncated and wrong-key ones
    url, dlq = make_queues()
    create_keyring(tmp_path / "keyring.json", key_id="dev-1")
    create_keyring(tmp_path / "other.json", key_id="dev-1")
    ring, other = LocalKeyring(tmp_path / "keyring.json"), LocalKeyring(tmp_path / "other.json")
    secret = "PLAINTEXT-canary-5d1e"
    good_body, attrs = encrypt_body(f'{{"secret": "{secret}"}}', ring)
    raw = bytearray(base64.b64decode(good_body))
    tampered = bytearray(raw)
    tampered[-5] ^= 0x01
    bad = {
        "tampered": base64.b64encode(bytes(tampered)).decode(),
        "truncated": base64.b64encode(bytes(raw[: len(raw) // 2])).decode(),
        "wrong key": encrypt_body(f'{{"secret": "{secret}"}}', other)[0],
    }
    for body in [good_body, *bad.values()]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        crypto={"enabled": True, "provider": "local", "keyring_path": str(tmp_path / "keyring.json")},
    )
    # WHEN the daemon runs until the queue is empty
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, dlq) == 3 and queue_total(sqs, url) == 0, timeout=60)
    # THEN the handler saw the plaintext of the good message only
    assert [json.loads(r["body"]) for r in daemon.handled()] == [{"secret": secret}]
    # AND the three bad ones are in the DLQ unchanged, each with a reason
    moved = {m["Body"]: m for m in receive_all(sqs, dlq)}
    assert set(moved) == set(bad.values())
    reasons = {
        name: json.loads(moved[body]["MessageAttributes"]["poller.failure"]["StringValue"])
        for name, body in bad.items()
    }
    assert reasons["tampered"]["error"] == REASON_AUTH
    assert reasons["wrong key"]["error"] == REASON_AUTH
    assert reasons["truncated"]["error"] in (REASON_AUTH, REASON_MALFORMED)
    assert all(r["type"] == "Poison" for r in reasons.values())
    # AND no plaintext or key material reached the logs
    assert secret not in daemon.text()
    for key in (ring._keys["dev-1"], other._keys["dev-1"]):
        assert base64.b64encode(key).decode() not in daemon.text()
    assert daemon.stop() == 0
