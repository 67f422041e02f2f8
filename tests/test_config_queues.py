"""Several queues in one config: [queues.NAME] tables, their environment overrides, the rules
that span their keys, and `select_queue`. Errors name the full key (queues.NAME...) and exit 2."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from poller.config import select_queue
from poller.configload import build_config, load_config
from poller.configqueues import queue_table_keys
from poller.errors import EXIT_CONFIG, ConfigError
from tests.test_config import BASE, expected, sample

U = "https://sqs.eu-west-1.amazonaws.com/1/"
QUEUES = {
    "queues": {
        "orders": {
            "url": U + "orders",
            "dlq_url": U + "orders-dlq",
            "priority": 10,
            "handler": {"target": "app.orders:handle", "style": "batch", "batch_size": 4},
            "flow": {"max_per_second": 50},
        },
        "audit-log": {
            "url": U + "audit",
            "dlq_url": U + "audit-dlq",
            "weight": 3,
            "max_concurrency": 4,
            "wait_time_seconds": 5,
            "handler": {"target": "app.audit:handle", "options": {"table": "audit"}},
        },
    },
    "workers": {"concurrency": 8},
}


def queues(**changes) -> dict:
    """QUEUES with `changes` applied: {"orders": {"weight": 2}, "orders.handler": {...}}."""
    raw = copy.deepcopy(QUEUES)
    for where, values in changes.items():
        name, _, sub = where.replace("__", "-").partition(".")
        table = raw["queues"].setdefault(name, {})
        (table.setdefault(sub, {}) if sub else table).update(values)
    return raw


def error_of(raw, env=None) -> str:
    with pytest.raises(ConfigError) as caught:
        build_config(raw, env=env or {})
    assert caught.value.exit_code == EXIT_CONFIG
    return str(caught.value)


# --- the two forms -----------------------------------------------------------------------------


def test_the_one_queue_form_is_one_queue_named_by_its_url():
    # GIVEN the one-queue form WHEN loaded
    config = build_config(BASE, env={})
    # THEN it is one queue, named by the URL's last path segment, with the sections' settings
    [spec] = config.queues
    assert spec.name == "jobs"
    assert (spec.queue, spec.handler, spec.flow) == (config.queue, config.handler, config.flow)
    assert (spec.priority, spec.weight, spec.max_concurrency) == (0, 1, 0)
    assert select_queue(config, None) is spec and select_queue(config, "jobs") is spec


def test_queue_tables_are_queues_in_file_order_and_the_first_is_config_queue():
    # GIVEN two [queues.NAME] tables WHEN loaded
    config = build_config(QUEUES, env={})
    orders, audit = config.queues
    # THEN each has its own settings, the defaults elsewhere
    assert (orders.name, audit.name) == ("orders", "audit-log")
    assert (orders.priority, orders.weight, orders.max_concurrency) == (10, 1, 0)
    assert (audit.priority, audit.weight, audit.max_concurrency) == (0, 3, 4)
    assert (orders.handler.style, orders.handler.batch_size) == ("batch", 4)
    assert (orders.flow.max_per_second, audit.flow.max_per_second) == (50, 0)
    assert (audit.queue.wait_time_seconds, orders.queue.wait_time_seconds) == (5, 20)
    assert dict(audit.handler.options) == {"table": "audit"} and audit.handler.timeout == 300
    # AND the one-queue fields hold the first queue's settings
    assert (config.queue, config.handler, config.flow) == (orders.queue, orders.handler, orders.flow)


def test_select_queue_needs_a_name_among_several_and_lists_them():
    config = build_config(QUEUES, env={})
    assert select_queue(config, "audit-log").queue.url == U + "audit"
    with pytest.raises(ConfigError, match="has 2 queues: give --queue NAME, one of: orders, audit-log"):
        select_queue(config, None)
    with pytest.raises(
        ConfigError, match="no queue named 'billing' in the config; its queues: orders, audit-log"
    ):
        select_queue(config, "billing")
    one = build_config(BASE, env={})
    with pytest.raises(ConfigError, match="no queue named 'orders' in the config; its queues: jobs"):
        select_queue(one, "orders")


@pytest.mark.parametrize("section", ["queue", "handler", "flow"])
def test_both_forms_in_one_file_is_an_error_that_says_so(section):
    raw = queues()
    raw[section] = dict(BASE.get(section, {"max_per_second": 1}))
    message = error_of(raw)
    assert f"both forms of queue config: [queues.NAME] tables and [{section}]" in message


def test_a_one_queue_variable_with_queue_tables_is_an_error_that_says_so():
    message = error_of(QUEUES, {"SQS_POLLER_HANDLER_TIMEOUT": "5"})
    assert "SQS_POLLER_HANDLER_TIMEOUT sets handler.timeout of the one-queue form" in message
    assert "SQS_POLLER_QUEUES_<NAME>_" in message


@pytest.mark.parametrize("name", ["Orders", "-orders", "or.ders", "_x", "ordërs"])
def test_a_bad_queue_name_is_named(name):
    raw = copy.deepcopy(QUEUES)
    raw["queues"][name] = raw["queues"].pop("orders")
    message = error_of(raw)
    assert f"the queue name {name!r} is not allowed" in message and "[a-z0-9][a-z0-9_-]*" in message


@pytest.mark.parametrize(
    "raw, says",
    [
        ({"queues": {}}, "[queues] in config must hold one [queues.NAME] table a queue"),
        ({"queues": {"orders": "x"}}, "queues.orders in config must be a table"),
        (queues(orders={"handler": "x"}), "queues.orders.handler in config must be a table"),
        (
            queues(orders={"colour": 1}),
            "unknown key queues.orders.colour in config; allowed in [queues.orders]: url",
        ),
        (
            queues(**{"orders.handler": {"colour": 1}}),
            "unknown key queues.orders.handler.colour in config; allowed keys in [queues.orders.handler]: "
            "target",
        ),
        (queues(**{"orders.flow": {"rate": 1}}), "unknown key queues.orders.flow.rate"),
        (
            queues(orders={"weight": 0}),
            "queues.orders.weight = 0 is out of range; allowed: int within 1..1000",
        ),
        (queues(orders={"priority": 1.5}), "queues.orders.priority = 1.5 has the wrong type"),
        (queues(orders={"batch_size": 11}), "queues.orders.batch_size = 11 is out of range"),
        (
            queues(audit__log={"url": "audit"}),
            "queues.audit-log.url = 'audit' is not valid: must be a queue URL",
        ),
        (queues(**{"orders.handler": {"style": "x"}}), "queues.orders.handler.style = 'x' is not allowed"),
        (
            queues(**{"orders.flow": {"breaker_cooldown": 0}}),
            "queues.orders.flow.breaker_cooldown = 0.0 is out of range",
        ),
        (
            {"queues": {"billing": {"url": U + "b", "dlq_url": U + "bd"}}},
            "missing required key queues.billing.handler.target (set it in [queues.billing.handler] of the "
            "config file or in SQS_POLLER_QUEUES_BILLING_HANDLER_TARGET)",
        ),
        (
            {"queues": {"billing": {"url": U + "b", "handler": {"target": "a.b:c"}}}},
            "missing required key queues.billing.dlq_url",
        ),
    ],
)
def test_bad_queue_tables_name_the_full_key(raw, says):
    assert says in error_of(raw)


@pytest.mark.parametrize(
    "raw, says",
    [
        (
            queues(**{"orders.handler": {"batch_size": 9}}),
            "queues.orders.handler.batch_size = 9 is above workers.concurrency = 8",
        ),
        (
            queues(**{"audit-log.handler": {"style": "lambda", "batch_size": 5}}),
            "queues.audit-log.handler.batch_size = 5 is above queues.audit-log.max_concurrency = 4",
        ),
        (
            queues(orders={"max_concurrency": 9}),
            "queues.orders.max_concurrency = 9 is above workers.concurrency = 8",
        ),
        (
            queues(orders={"dlq_url": U + "orders-dlq.fifo"}),
            "queues.orders.dlq_url must be a FIFO queue (.fifo) exactly when queues.orders.url is one",
        ),
        (
            queues(orders={"dlq_url": U + "orders"}),
            "queues.orders.dlq_url must differ from queues.orders.url",
        ),
        (queues(audit__log={"url": U + "orders"}), "queues.audit-log.url is also queues.orders.url"),
    ],
)
def test_rules_that_span_keys_hold_per_queue_and_name_it(raw, says):
    assert says in error_of(raw)


def test_a_fifo_queue_table_with_a_fifo_dlq_and_a_batch_within_its_cap_is_fine():
    raw = queues(
        orders={"url": U + "orders.fifo", "dlq_url": U + "orders-dlq.fifo"},
        **{"audit-log.handler": {"style": "batch", "batch_size": 4}},
    )
    config = build_config(raw, env={})
    assert config.queues[0].queue.is_fifo and config.queues[1].handler.batch_size == 4


# --- every key of a queue table, from TOML and from the environment -----------------------------

NAME = "my-jobs"  # a '-' in the name: its variables spell it MY_JOBS


def table_keys():
    return [
        pytest.param(sub, key, id=key.path)
        for sub, keys in queue_table_keys(NAME).items()
        for key in keys.values()
    ]


def one_queue_twin(sub, key):
    """The same key in the one-queue form (for a sample value); a table's own keys are [queue]'s."""
    section = sub or ("queue" if key.name in {f.name for f in dataclasses.fields(BASE_CONFIG.queue)} else "")
    return dataclasses.replace(key, section=section) if section else key


BASE_CONFIG = build_config(BASE, env={})


def table_with(sub, key, value):
    raw = {
        "queues": {
            NAME: {"url": U + "mine", "dlq_url": U + "mine-dlq", "handler": {"target": "pkg.mod:handle"}}
        }
    }
    table = raw["queues"][NAME]
    (table.setdefault(sub, {}) if sub else table)[key.name] = value
    return raw


def got(config, sub, key):
    spec = config.queues[0]
    if sub:
        return getattr(getattr(spec, sub), key.name)
    return getattr(spec.queue, key.name) if hasattr(spec.queue, key.name) else getattr(spec, key.name)


@pytest.mark.parametrize("sub, key", table_keys())
def test_every_queue_table_key_can_be_set_from_toml(sub, key):
    # GIVEN a valid non-default value for the key WHEN it is in the queue's table THEN it has it
    value, _ = sample(one_queue_twin(sub, key))
    config = build_config(table_with(sub, key, value), env={})
    assert got(config, sub, key) == expected(key, value)


@pytest.mark.parametrize("sub, key", table_keys())
def test_every_queue_table_key_can_be_set_from_the_environment(sub, key):
    # GIVEN the same value as text WHEN set as SQS_POLLER_QUEUES_MY_JOBS_[HANDLER_|FLOW_]<KEY>
    value, text = sample(one_queue_twin(sub, key))
    raw = table_with(sub, key, value)
    table = raw["queues"][NAME]
    (table[sub] if sub else table).pop(key.name)
    assert key.env.startswith("SQS_POLLER_QUEUES_MY_JOBS_" + (f"{sub.upper()}_" if sub else ""))
    # THEN the queue has it
    config = build_config(raw, env={key.env: text})
    assert got(config, sub, key) == expected(key, value)


def test_the_environment_overrides_the_queue_it_names_only():
    env = {"SQS_POLLER_QUEUES_AUDIT_LOG_HANDLER_TIMEOUT": "9", "SQS_POLLER_QUEUES_ORDERS_WEIGHT": "4"}
    orders, audit = build_config(QUEUES, env=env).queues
    assert (audit.handler.timeout, orders.handler.timeout) == (9, 300)
    assert (orders.weight, audit.weight) == (4, 3)


def test_the_environment_cannot_add_a_queue():
    message = error_of(QUEUES, {"SQS_POLLER_QUEUES_BILLING_URL": U + "billing"})
    assert "unknown environment variable SQS_POLLER_QUEUES_BILLING_URL" in message
    assert "the environment cannot add a queue" in message
    assert "[queues.NAME] tables in config: orders, audit-log" in message
    # AND neither can it beside the one-queue form
    message = error_of(BASE, {"SQS_POLLER_QUEUES_JOBS_URL": U + "jobs"})
    assert "the environment cannot add a queue" in message and "tables in config: none" in message


def test_a_variable_that_could_mean_two_keys_is_an_error_naming_both():
    # GIVEN queues `a` and `a_handler`: A_HANDLER_BATCH_SIZE is a's handler key and a_handler's own
    raw = {
        "queues": {
            "a": {"url": U + "a", "dlq_url": U + "ad", "handler": {"target": "m.n:f"}},
            "a_handler": {"url": U + "ah", "dlq_url": U + "ahd", "handler": {"target": "m.n:f"}},
        }
    }
    message = error_of(raw, {"SQS_POLLER_QUEUES_A_HANDLER_BATCH_SIZE": "3"})
    assert "SQS_POLLER_QUEUES_A_HANDLER_BATCH_SIZE is ambiguous" in message
    assert "queues.a.handler.batch_size or queues.a_handler.batch_size" in message
    # AND a variable only one of them has is not ambiguous
    config = build_config(raw, env={"SQS_POLLER_QUEUES_A_HANDLER_URL": U + "other"})
    assert config.queues[1].queue.url == U + "other"


def test_bad_environment_text_names_the_variable():
    message = error_of(QUEUES, {"SQS_POLLER_QUEUES_ORDERS_PRIORITY": "high"})
    assert "SQS_POLLER_QUEUES_ORDERS_PRIORITY='high' is not valid; allowed: int within -1000..1000" in message


def test_queue_tables_from_a_toml_file(tmp_path):
    # GIVEN a file written the way the docs show it
    path = tmp_path / "p.toml"
    path.write_text(
        f"""
[workers]
concurrency = 6

[queues.billing]
url = "{U}billing"
dlq_url = "{U}billing-dlq"
priority = 10
[queues.billing.handler]
target = "app.billing:handle"
[queues.billing.handler.options]
api = "http://billing"
[queues.billing.flow]
max_per_second = 20

[queues.mailbox]
url = "{U}mailbox"
dlq_url = "{U}mailbox-dlq"
max_concurrency = 3
[queues.mailbox.handler]
target = "app.mailbox:handle"
"""
    )
    # WHEN it is loaded THEN its queues are in file order with their settings
    billing, mailbox = load_config(str(path), env={}).queues
    assert (billing.name, billing.priority, dict(billing.handler.options)) == (
        "billing",
        10,
        {"api": "http://billing"},
    )
    assert (mailbox.name, mailbox.max_concurrency, mailbox.flow.max_per_second) == ("mailbox", 3, 0)


def test_the_readme_documents_the_queue_tables_keys_and_variables():
    from pathlib import Path

    from poller.config import QueueSpec
    from poller.configkeys import declared_keys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "[queues.billing.handler]" in readme and "[queues.billing.flow]" in readme
    for key in declared_keys("queues.NAME", QueueSpec):
        assert f"\n{key.name} = " in readme, key.name
    for form in ("<NAME>_<KEY>", "<NAME>_HANDLER_<KEY>", "<NAME>_FLOW_<KEY>"):
        assert f"SQS_POLLER_QUEUES_{form}" in readme
