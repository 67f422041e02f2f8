"""The config contract: defaults, environment overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from poller.configload import build_config, load_config
from poller.errors import ConfigError

BASE = {
    "queue": {
        "url": "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        "dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
    },
    "handler": {"target": "pkg.mod:handle"},
}


def test_defaults_match_the_design():
    config = build_config(BASE, env={})
    assert (config.queue.wait_time_seconds, config.queue.batch_size) == (20, 10)
    assert (config.queue.visibility_timeout, config.queue.max_receives) == (30, 5)
    assert (config.retry.backoff_base, config.retry.backoff_max) == (2.0, 900)
    assert (config.workers.concurrency, config.workers.shutdown_grace) == (10, 30)
    assert config.workers.processes >= 1
    assert (config.handler.timeout, dict(config.handler.options)) == (300, {})
    assert config.metrics.listen == "127.0.0.1:9102"
    assert (config.logging.level, config.logging.format) == ("info", "json")


def test_environment_overrides_every_key_with_its_type():
    env = {
        "SQS_POLLER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/other",
        "SQS_POLLER_WORKERS_PROCESSES": "7",
        "SQS_POLLER_RETRY_BACKOFF_BASE": "0.5",
        "SQS_POLLER_LIFECYCLE_ENABLED": "false",
        "SQS_POLLER_METRICS_LISTEN": "",
    }
    config = build_config(BASE, env=env)
    assert config.queue.url.endswith("/other")
    assert config.workers.processes == 7
    assert config.retry.backoff_base == 0.5
    assert config.metrics.address is None


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"retry": {"backoff_max": 1, "backoff_base": 5}},
            "retry.backoff_max = 1 is below retry.backoff_base",
        ),
        ({"queue": {"batch_size": 11}}, "queue.batch_size = 11 is out of range; allowed: int within 1..10"),
        ({"queue": {"visibility_timeout": True}}, "queue.visibility_timeout = True has the wrong type"),
        ({"queue": {"url": "jobs"}}, "queue.url = 'jobs' is not valid: must be a queue URL"),
        ({"handler": {"target": "no-colon"}}, "handler.target = 'no-colon' is not valid"),
        ({"metrics": {"listen": "nohost"}}, "metrics.listen = 'nohost' is not valid"),
        ({"queue": {"region": "eu west"}}, "queue.region = 'eu west' is not valid: must be a region"),
        ({"lifecycle": {"enabled": True}}, "lifecycle.enabled = true needs lifecycle.asg_name"),
        ({"extra": {}}, "unknown section [extra]"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(patch, message):
    raw = {name: dict(values) for name, values in BASE.items()}
    for section, values in patch.items():
        raw.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError) as caught:
        build_config(raw, env={})
    assert message in str(caught.value)


def test_fifo_queue_needs_a_fifo_dlq():
    raw = {
        **BASE,
        "queue": {"url": "https://sqs.eu-west-1.amazonaws.com/1/j.fifo", "dlq_url": BASE["queue"]["dlq_url"]},
    }
    with pytest.raises(ConfigError, match="queue.dlq_url must be a FIFO queue"):
        build_config(raw, env={})


def test_unknown_environment_variable_is_an_error():
    with pytest.raises(ConfigError, match="unknown environment variable SQS_POLLER_QUEUE_URLS"):
        build_config(BASE, env={"SQS_POLLER_QUEUE_URLS": "x"})


def test_config_path_from_the_environment_and_toml_errors(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[queue\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(None, env={"SQS_POLLER_CONFIG": str(path)})


# --- every key of the one schema, from TOML and from the environment ---------------------------

SAMPLES = {  # keys whose value must have a shape; every other key gets a generic value of its type
    "queue.url": "https://sqs.eu-west-1.amazonaws.com/1/other",
    "queue.dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/other-dlq",
    "handler.target": "other.module:handle",
    "metrics.listen": "0.0.0.0:9300",
    "secrets.ssm_paths": ["/a", "/b/c"],
    "secrets.secrets_manager": {"api": "prod/api"},
    "handler.filters": ['{"body": {"kind": ["a"]}}', '{"body": {"kind": [{"prefix": "b"}]}}'],
    "handler.options": {"url": "http://x", "pool": 3},
    "secrets.ttl": 60.0,
    "control.socket": "/run/sqs-poller-jobs/control.sock",
}


def sample(key):
    """A valid, non-default value for `key`, and its environment-variable text."""
    import json

    if key.path in SAMPLES:
        value = SAMPLES[key.path]
    elif key.spec.choices:
        value = next(c for c in key.spec.choices if c != key.default)
    elif key.kind is bool:
        value = not key.default
    elif key.kind in (int, float):
        low = key.spec.low if key.spec.low is not None else 0
        value = key.kind(max(low, 1) + 1 if key.default != max(low, 1) + 1 else max(low, 1) + 2)
        if key.spec.high is not None:
            value = min(value, key.kind(key.spec.high))
        if key.path == "handler.batch_size":
            value = 5  # must stay within workers.concurrency (10 by default)
        if key.path == "retry.backoff_base":
            value = 3.0
    elif key.kind is str:
        value = "http://127.0.0.1:9999" if "url" in key.name else f"{key.name}-value"
    else:
        raise AssertionError(f"no sample for {key.path}")
    if isinstance(value, list | dict):
        text = json.dumps(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return value, text


def every_key():
    from poller.configload import schema_keys

    return [pytest.param(key, id=key.path) for key in schema_keys()]


def expected(key, value):
    if key.kind is tuple:
        return tuple(value)
    return value


def with_section(key, value):
    raw = {name: dict(values) for name, values in BASE.items()}
    raw.setdefault(key.section, {})[key.name] = value
    if key.section == "lifecycle" and key.name == "enabled":
        raw["lifecycle"].update(asg_name="g", hook_name="h")
    if key.section == "crypto" and key.name in ("enabled", "require_encryption"):
        raw["crypto"].update(enabled=True, provider="kms")
    if key.section == "idempotency" and key.name == "enabled":
        raw["idempotency"]["table"] = "t"
    if key.path == "metrics.emf_namespace":
        raw["metrics"].update(deployment="jobs", version="ami-1")
    if key.path == "crypto.provider":
        raw["crypto"]["keyring_path"] = "/k.json"
    return raw


@pytest.mark.parametrize("key", every_key())
def test_every_key_can_be_set_from_toml(key):
    # GIVEN a valid non-default value for the key WHEN it is in the TOML THEN the config has it
    value, _ = sample(key)
    config = build_config(with_section(key, value), env={})
    assert getattr(getattr(config, key.section), key.name) == expected(key, value)


@pytest.mark.parametrize("key", every_key())
def test_every_key_can_be_set_from_the_environment(key):
    # GIVEN the same value as environment text WHEN set as SQS_POLLER_<SECTION>_<KEY> THEN it wins
    value, text = sample(key)
    raw = with_section(key, value)
    raw[key.section].pop(key.name)
    config = build_config(raw, env={key.env: text})
    assert getattr(getattr(config, key.section), key.name) == expected(key, value)


def test_lists_from_the_environment_are_comma_separated_or_json():
    env = {"SQS_POLLER_SECRETS_SSM_PATHS": "/a,/b"}
    assert build_config(BASE, env=env).secrets.ssm_paths == ("/a", "/b")
    env = {"SQS_POLLER_SECRETS_SSM_PATHS": '["/a", "/b"]'}
    assert build_config(BASE, env=env).secrets.ssm_paths == ("/a", "/b")
    with pytest.raises(ConfigError, match="SQS_POLLER_HANDLER_OPTIONS='x' is not valid.*JSON object"):
        build_config(BASE, env={"SQS_POLLER_HANDLER_OPTIONS": "x"})


def test_a_range_is_stated_once_and_worded_the_same_from_toml_and_env():
    with pytest.raises(ConfigError, match=r"secrets.ttl = 5.0 is not valid: must be 0 or at least 10"):
        build_config({**BASE, "secrets": {"ttl": 5}}, env={})
    with pytest.raises(ConfigError, match=r"secrets.ttl = 5.0 is not valid: must be 0 or at least 10"):
        build_config(BASE, env={"SQS_POLLER_SECRETS_TTL": "5"})


def test_the_default_config_takes_the_design_defaults_for_new_sections():
    config = build_config(BASE, env={})
    assert (config.handler.style, config.handler.batch_size, config.handler.batch_window) == (
        "message",
        10,
        0,
    )
    assert config.handler.filters == ()
    assert (config.flow.max_per_second, config.flow.breaker_failure_ratio) == (0, 0.5)
    assert (config.flow.breaker_min_messages, config.flow.breaker_cooldown) == (20, 30)
    assert (config.payload.s3_bucket, config.payload.offload_above) == ("", 262144)
    assert config.payload.delete_after_success and not config.tracing.enabled
    assert (config.workers.max_memory_mb, config.workers.max_messages) == (0, 0)
