"""The Terraform module's side of the rollout: the group stays saved on the running
version, Terraform starts no refresh, the rollout output feeds `sqs-poller deploy start`,
its alarms watch only the new release, and instances never boot before their policy.
(Defects: auto rollback restored the new version; alarms on the whole queue stopped a
fix during a backlog; a group of one lost its worker; the first instances booted
without their policy.)"""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.test_terraform import MODULE, block, default, load_dir, resource


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_dir(MODULE)


def test_group_saves_a_version_number_that_terraform_then_leaves_alone(tf):
    # GIVEN the group's launch template, inside its mixed instances policy
    group = resource(tf, "aws_autoscaling_group", "this")
    assert "launch_template" not in group, "one launch template place only"
    policy = block(group, "mixed_instances_policy")
    spec = block(block(policy, "launch_template"), "launch_template_specification")
    # THEN it is a number (a rollback needs one to return to), never $Latest/$Default
    assert spec["version"] == "${aws_launch_template.this.latest_version}"
    assert spec["launch_template_id"] == "${aws_launch_template.this.id}"
    # AND later applies do not save the new version on the group: the rollout does, once
    # it succeeds (hashicorp/terraform-provider-aws#34189)
    ignored = block(group, "lifecycle")["ignore_changes"]
    assert (
        "${mixed_instances_policy[0].launch_template[0].launch_template_specification[0].version}" in ignored
    )


def test_terraform_starts_no_refresh_the_rollout_command_does(tf):
    # GIVEN the group: a Terraform-started refresh would save the new version first
    group = resource(tf, "aws_autoscaling_group", "this")
    assert "instance_refresh" not in group
    # THEN the rollout output carries everything `sqs-poller deploy start` needs
    rollout = tf["output"]["rollout"]["value"]
    assert rollout["group"] == "${aws_autoscaling_group.this.name}"
    assert rollout["version"] == "${tostring(aws_launch_template.this.latest_version)}"
    assert rollout["checkpoints"] == "${var.canary_checkpoints}"
    assert default(tf, "canary_checkpoints") == [10, 50, 100]
    assert rollout["checkpoint_delay"] == "${var.canary_checkpoint_delay}"
    assert default(tf, "canary_checkpoint_delay") > 0
    # AND a group of one keeps its worker: the replacement is in service first
    assert rollout["min_healthy_percentage"] == "${var.min_healthy_percentage}"
    assert rollout["max_healthy_percentage"] == "${var.max_healthy_percentage}"
    assert default(tf, "min_healthy_percentage") == 100
    assert default(tf, "max_healthy_percentage") == 200
    # AND its keys are exactly the rollout settings the command accepts
    from poller.ops.deploy import RolloutSettings

    assert set(rollout) == set(RolloutSettings.__dataclass_fields__)
    # AND the alarms are the release's own (all queues, and each queue's), never a queue's
    alarms = rollout["alarms"]
    assert alarms.startswith("${concat(") and "AWS/SQS" not in alarms
    named = set(re.findall(r"aws_cloudwatch_metric_alarm\.(\w+)\.alarm_name", alarms))
    named |= set(re.findall(r"values\(aws_cloudwatch_metric_alarm\.(\w+)\)", alarms))
    assert named == {"release_dead_lettered", "release_handler_errors", "release_queue_dead_lettered"}


def test_rollout_alarms_watch_only_the_new_releases_figures(tf):
    # GIVEN the release label the daemon puts on its EMF figures
    assert "release = local.release" in tf["locals"]["daemon_config"]
    assert tf["locals"]["release"].startswith("${var.ami_id}-")
    assert "sha256" in tf["locals"]["release"]
    template = (MODULE / "templates" / "poller.toml.tftpl").read_text()
    assert "version = ${jsonencode(release)}" in template
    # THEN both rollout alarms read this deployment's metrics of exactly that release
    dimensions = tf["locals"]["release_dimensions"]
    assert dimensions == {"Deployment": "${var.name}", "Version": "${local.release}"}
    dead = resource(tf, "aws_cloudwatch_metric_alarm", "release_dead_lettered")
    assert (dead["namespace"], dead["metric_name"]) == ("${local.metrics_namespace}", "DeadLettered")
    assert dead["dimensions"] == "${local.release_dimensions}"
    errors = resource(tf, "aws_cloudwatch_metric_alarm", "release_handler_errors")
    queries = {query["id"]: query for query in errors["metric_query"]}
    assert queries["error_rate"]["return_data"] is True
    for metric_id, name in (("errors", "HandlerErrors"), ("deleted", "Deleted")):
        metric = block(queries[metric_id], "metric")
        assert (metric["namespace"], metric["metric_name"]) == ("${local.metrics_namespace}", name)
        assert metric["dimensions"] == "${local.release_dimensions}"
    # AND nothing that measures the whole queue can stop a rollout
    for alarm in (dead, errors):
        assert "AWS/SQS" not in json.dumps(alarm)


def test_instance_policy_exists_before_the_first_instance_boots(tf):
    # GIVEN the group ARN the policy is scoped to
    arn = tf["locals"]["asg_arn"]
    # THEN it is built from the name, so the policy does not wait for the group...
    assert arn.endswith(":autoScalingGroup:*:autoScalingGroupName/${local.asg_name}")
    assert arn.startswith("arn:${local.partition}:autoscaling:${local.region}:${local.account_id}")
    policy = json.dumps(tf["data"]["aws_iam_policy_document"]["poller"])
    assert "aws_autoscaling_group." not in policy
    # ...and the group waits for the policy
    group = resource(tf, "aws_autoscaling_group", "this")
    for policy in ("poller", "session_manager", "payload"):
        assert f"${{aws_iam_role_policy.{policy}}}" in group["depends_on"], policy
    assert "${aws_iam_role_policy_attachment.ssm_core}" in group["depends_on"]
