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
