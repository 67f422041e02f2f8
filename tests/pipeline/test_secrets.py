"""Secrets from SSM Parameter Store and Secrets Manager (moto): loaded once, refreshed, redacted."""

from __future__ import annotations

import json
import logging
import threading
import time

import boto3
import pytest
import structlog
from moto import mock_aws

from poller.errors import ConfigError
from poller.pipeline.secrets import Secrets, SecretsError, build_secrets
from tests.configs import section

TOKEN = "tok-SECRET-VALUE-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        ssm.put_parameter(Name="/mailbox/prod/legacy/token", Value=TOKEN, Type="SecureString")
        ssm.put_parameter(Name="/mailbox/prod/legacy/user", Value="svc-mail", Type="String")
        ssm.put_parameter(Name="/mailbox/prod/db/password", Value="pw-SECRET", Type="SecureString")
        ssm.put_parameter(Name="/mailbox/staging/legacy/token", Value="staging", Type="SecureString")
        sm.create_secret(Name="prod/api", SecretString=json.dumps({"key": "api-SECRET"}))
        yield ssm, sm


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_loads_ssm_path_recursively_with_relative_names_and_decryption(aws):
    # GIVEN parameters under /mailbox/prod (and others elsewhere)
    secrets = Secrets(ssm_paths=["/mailbox/prod"])
    # WHEN loaded
    secrets.refresh()
    # THEN only that path's parameters, named relative to it, with SecureStrings decrypted
    assert dict(secrets) == {
        "legacy/token": TOKEN,
        "legacy/user": "svc-mail",
        "db/password": "pw-SECRET",
    }


def test_pagination_loads_every_parameter(aws):
    # GIVEN 35 parameters under one path (GetParametersByPath returns at most 10 a page)
    ssm, _ = aws
    for i in range(35):
        ssm.put_parameter(Name=f"/many/p{i:02d}", Value=f"v{i}", Type="SecureString")
    # WHEN loaded THEN all 35 are there
    secrets = Secrets(ssm_paths=["/many/"])
    secrets.refresh()
    assert len(secrets) == 35 and secrets["p34"] == "v34"


def test_secrets_manager_by_name(aws):
    # GIVEN a Secrets Manager secret mapped to a name
    secrets = Secrets(secrets_manager={"api": "prod/api"})
    secrets.refresh()
    # THEN it is available as a string and as JSON
    assert json.loads(secrets["api"]) == {"key": "api-SECRET"}
    assert secrets.get_json("api")["key"] == "api-SECRET"


def test_both_sources_together_and_duplicate_names_are_refused(aws):
    # GIVEN SSM and Secrets Manager sources
    secrets = Secrets(ssm_paths=["/mailbox/prod"], secrets_manager={"api": "prod/api"})
    secrets.refresh()
    assert set(secrets) == {"legacy/token", "legacy/user", "db/password", "api"}
    # WHEN two sources give the same name THEN loading fails naming it, never a value
    clash = Secrets(ssm_paths=["/mailbox/prod"], secrets_manager={"legacy/token": "prod/api"})
    with pytest.raises(SecretsError) as info:
        clash.refresh()
    assert "legacy/token" in str(info.value) and "SECRET" not in str(info.value)


def test_repr_str_and_logs_never_show_values(aws, caplog):
    # GIVEN loaded secrets
    secrets = Secrets(ssm_paths=["/mailbox/prod"], secrets_manager={"api": "prod/api"})
    # (botocore's own DEBUG log prints response bodies; poller.daemon.log pins botocore at ERROR)
    caplog.set_level(logging.DEBUG, logger="poller")
    with structlog.testing.capture_logs() as logs:
        secrets.refresh()
        # WHEN the object (or options holding it) is formatted or logged
        text = repr(secrets) + str(secrets) + f"{secrets}" + repr({"secrets": secrets})
        structlog.get_logger("test").info("handler_options", options={"secrets": secrets})
    # THEN names show, values never do
    assert "legacy/token" in text and "<redacted>" in text
    everything = text + repr(logs) + caplog.text
    for value in (TOKEN, "pw-SECRET", "api-SECRET", "svc-mail"):
        assert value not in everything
    assert [e["event"] for e in logs][0] == "secrets_loaded"


def test_missing_name_error_names_only_the_name(aws):
    secrets = Secrets(ssm_paths=["/mailbox/prod"])
    secrets.refresh()
    with pytest.raises(KeyError, match="no secret named 'nope'"):
        secrets["nope"]
    assert secrets.get("nope") is None and "nope" not in secrets


def test_read_only(aws):
    secrets = Secrets(ssm_paths=["/mailbox/prod"])
    secrets.refresh()
    with pytest.raises(TypeError):
        secrets["x"] = "y"  # type: ignore[index]


def test_refresh_if_stale_follows_the_ttl(aws, clock):
    # GIVEN secrets loaded with a 300 s TTL
    ssm, _ = aws
    secrets = Secrets(ssm_paths=["/mailbox/prod"], ttl=300, clock=clock)
    assert secrets.refresh_if_stale() is True
    # WHEN the value is rotated
    ssm.put_parameter(Name="/mailbox/prod/legacy/token", Value="rotated", Type="SecureString", Overwrite=True)
    # THEN it is not fetched again before the TTL
    clock.now += 299
    assert secrets.refresh_if_stale() is False
    assert secrets["legacy/token"] == TOKEN
    # AND is picked up after it
    clock.now += 2
    assert secrets.refresh_if_stale() is True
    assert secrets["legacy/token"] == "rotated"
    assert secrets.refreshes == 2


def test_explicit_refresh_as_on_sighup_picks_up_rotation_at_once(aws, clock):
    # GIVEN secrets with a long TTL
    _, sm = aws
    secrets = Secrets(secrets_manager={"api": "prod/api"}, ttl=86400, clock=clock)
    secrets.refresh()
    sm.put_secret_value(SecretId="prod/api", SecretString='{"key": "new"}')
    # WHEN refresh() is called (what the worker does on SIGHUP) THEN the new value is there
    assert secrets.refresh() is True
    assert secrets.get_json("api") == {"key": "new"}


def test_ttl_zero_refreshes_only_on_demand(aws, clock):
    secrets = Secrets(ssm_paths=["/mailbox/prod"], ttl=0, clock=clock)
    secrets.refresh()
    clock.now += 10**9
    assert secrets.refresh_if_stale() is False


def test_failed_refresh_keeps_old_values_logs_code_only_and_retries_later(aws, clock):
    # GIVEN loaded secrets
    _, sm = aws
    secrets = Secrets(ssm_paths=["/mailbox/prod"], secrets_manager={"api": "prod/api"}, ttl=60, clock=clock)
    secrets.refresh()
    # WHEN the secret disappears and the TTL passes
    sm.delete_secret(SecretId="prod/api", ForceDeleteWithoutRecovery=True)
    clock.now += 61
    with structlog.testing.capture_logs() as logs:
        refreshed = secrets.refresh_if_stale()
    # THEN the refresh fails, the old values stay, and the log names the code and source only
    assert refreshed is False
    assert secrets.get_json("api") == {"key": "api-SECRET"}
    assert secrets["legacy/token"] == TOKEN
    [event] = [e for e in logs if e["event"] == "secrets_refresh_failed"]
    assert event["error"] == "ResourceNotFoundException"
    assert event["source"] == "secretsmanager:prod/api"
    assert "SECRET" not in repr(logs) and TOKEN not in repr(logs)
    # AND it is retried after 30 s, not on every call
    assert secrets.refresh_if_stale() is False
    clock.now += 31
    sm.create_secret(Name="prod/api", SecretString='{"key": "back"}')
    assert secrets.refresh_if_stale() is True
    assert secrets.get_json("api") == {"key": "back"}


def test_first_load_failure_raises(aws):
    # GIVEN a secret that does not exist WHEN loading the first time THEN SecretsError says which
    secrets = Secrets(secrets_manager={"api": "nope/nothing"})
    with pytest.raises(SecretsError, match="secretsmanager:nope/nothing: ResourceNotFoundException"):
        secrets.refresh()


def test_unreachable_endpoint_first_load_raises_with_error_class(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    secrets = Secrets(ssm_paths=["/x"], region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(SecretsError, match="ssm:/x/: EndpointConnectionError"):
        secrets.refresh()


def test_snapshot_is_one_whole_generation_during_refresh(aws, clock):
    # GIVEN two related values rotated together
    ssm, _ = aws
    secrets = Secrets(ssm_paths=["/mailbox/prod"], clock=clock)
    secrets.refresh()
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            snapshot = secrets.snapshot()
            seen.append((snapshot["legacy/token"], snapshot["legacy/user"]))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(5):
        for name in ("token", "user"):
            ssm.put_parameter(
                Name=f"/mailbox/prod/legacy/{name}", Value=f"v{i}", Type="SecureString", Overwrite=True
            )
        secrets.refresh()
    stop.set()
    thread.join()
    # THEN no reader saw a token from one generation and a user from another
    assert all(token == user for token, user in seen if token.startswith("v"))


def test_config_validation_and_factory(aws):
    with pytest.raises(ConfigError, match="secrets.ssm_paths"):
        section("secrets", {"ssm_paths": ["relative/path"]})
    with pytest.raises(ConfigError, match="secrets.ttl"):
        section("secrets", {"ttl": 5})
    with pytest.raises(ConfigError, match="secrets.secrets_manager"):
        section("secrets", {"secrets_manager": {"api": ""}})
    with pytest.raises(ConfigError, match="secrets.path"):
        section("secrets", {"path": "/x"})
    # GIVEN paths as one comma-separated string (an environment override) THEN they are split
    env = {"SQS_POLLER_SECRETS_SSM_PATHS": "/a, /b/"}
    assert section("secrets", env=env).ssm_paths == ("/a", "/b/")
    # GIVEN a section with no source THEN nothing is built
    assert build_secrets(section("secrets")) is None
    # GIVEN a section with sources THEN the factory returns loaded secrets
    cfg = section("secrets", {"ssm_paths": ["/mailbox/prod"], "secrets_manager": {"api": "prod/api"}})
    secrets = build_secrets(cfg)
    assert secrets["legacy/user"] == "svc-mail" and "api" in secrets


class SlowSecretsManager:
    """A stand-in Secrets Manager client that takes its time and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def get_secret_value(self, SecretId: str) -> dict:  # noqa: N803 - boto3's parameter name
        self.calls += 1
        time.sleep(0.2)
        return {"SecretString": f"v{self.calls}"}


def test_concurrent_stale_checks_refresh_once_and_never_wait(clock):
    # GIVEN loaded secrets past their TTL, on a slow secret store
    client = SlowSecretsManager()
    secrets = Secrets(secrets_manager={"api": "x"}, ttl=60, secretsmanager_client=client, clock=clock)
    secrets.refresh()
    clock.now += 61
    results, durations = [], []
    start = threading.Barrier(8)

    def handler_thread():
        start.wait()
        began = time.monotonic()
        results.append(secrets.refresh_if_stale())
        durations.append(time.monotonic() - began)

    # WHEN eight threads check at once
    threads = [threading.Thread(target=handler_thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # THEN one refreshed, the others went on at once with the current values
    assert client.calls == 2
    assert results.count(True) == 1
    assert sorted(durations)[:7] == pytest.approx([0] * 7, abs=0.1)
    assert secrets["api"] == "v2"


# --- the daemon end to end ------------------------------------------------------------------


class SecretRecorder:
    """A handler class for the daemon test: records which generation of a secret it sees."""

    def __init__(self, options: dict):
        self.secrets = options["secrets"]

    def handle(self, message) -> None:
        from tests.sample_handlers import record

        record(message, token_generation=self.secrets["legacy/token"].split("-")[0])


def test_daemon_hands_secrets_to_handlers_and_refreshes_them_on_sighup(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    import signal

    from tests.conftest import send_bodies, wait_until, write_config

    # GIVEN a SecureString parameter on the local endpoint and a long TTL
    ssm = local_sqs.client("ssm")
    path = f"/t-{tmp_path.name[-10:]}"
    ssm.put_parameter(Name=f"{path}/legacy/token", Value="gen1-SECRETVALUE", Type="SecureString")
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.pipeline.test_secrets:SecretRecorder"},
        secrets={
            "ssm_paths": [path],
            "ttl": 3600,
            "endpoint_url": local_sqs.endpoint_url,
            "region": "us-east-1",
        },
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, ["before"])
    wait_until(lambda: len(daemon.handled()) == 1, timeout=30)
    # WHEN the secret is rotated and the daemon gets SIGHUP
    ssm.put_parameter(
        Name=f"{path}/legacy/token", Value="gen2-SECRETVALUE", Type="SecureString", Overwrite=True
    )
    old_workers = set(daemon.worker_pids())
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (now := set(daemon.worker_pids())) and not now & old_workers, timeout=60)
    send_bodies(sqs, url, ["after"])
    wait_until(lambda: len(daemon.handled()) == 2, timeout=30)
    # THEN the handler saw the first value before and the rotated one after, never logged
    assert [r["token_generation"] for r in daemon.handled()] == ["gen1", "gen2"]
    assert "SECRETVALUE" not in daemon.text()
    assert daemon.stop() == 0
