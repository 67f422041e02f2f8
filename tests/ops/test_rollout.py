"""The canary rollout (defect: auto rollback restored the new version).

The Auto Scaling API is botocore's Stubber: it checks every call and its exact
parameters in order and fails on any call not expected (moto implements no instance
refresh). What is asserted is what AWS would be sent: the group's saved configuration is
never touched, and the new version travels only as the refresh's DesiredConfiguration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from poller.cli.deploy import deploy
from poller.ops.deploy import (
    RolloutError,
    RolloutSettings,
    rollback_rollout,
    start_rollout,
)

GROUP = "jobs"
TEMPLATE_ID = "lt-0123456789abcdef0"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def autoscaling():
    client = boto3.session.Session().client(
        "autoscaling",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def mixed_group(version: str) -> dict:
    return {
        "AutoScalingGroupName": GROUP,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": TEMPLATE_ID,
                    "LaunchTemplateName": "jobs-20260101",
                    "Version": version,
                },
                "Overrides": [{"InstanceType": "c7i.large"}, {"InstanceType": "m7i.large"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 1,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        },
        "MinSize": 1,
        "MaxSize": 4,
        "DesiredCapacity": 1,
        "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"],
        "HealthCheckType": "EC2",
        "CreatedTime": NOW,
    }


def refresh(status: str, refresh_id: str = "r-1", percent: int = 0, reason: str = "") -> dict:
    state = {
        "InstanceRefreshId": refresh_id,
        "AutoScalingGroupName": GROUP,
        "Status": status,
        "PercentageComplete": percent,
        "InstancesToUpdate": 1,
    }
    if reason:
        state["StatusReason"] = reason
    return state


SETTINGS = RolloutSettings(
    group=GROUP,
    version="7",
    alarms=("jobs-new-version-dead-lettered", "jobs-new-version-handler-errors"),
    checkpoints=(10, 50, 100),
    checkpoint_delay=600,
    min_healthy_percentage=100,
    max_healthy_percentage=200,
    instance_warmup=120,
)

EXPECTED_START = {
    "AutoScalingGroupName": GROUP,
    "Strategy": "Rolling",
    "DesiredConfiguration": {
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": TEMPLATE_ID, "Version": "7"},
                "Overrides": [{"InstanceType": "c7i.large"}, {"InstanceType": "m7i.large"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 1,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        }
    },
    "Preferences": {
        "CheckpointPercentages": [10, 50, 100],
        "CheckpointDelay": 600,
        "MinHealthyPercentage": 100,
        "MaxHealthyPercentage": 200,
        "InstanceWarmup": 120,
        "SkipMatching": True,
        "AutoRollback": True,
        "ScaleInProtectedInstances": "Refresh",
        "StandbyInstances": "Terminate",
        "AlarmSpecification": {
            "Alarms": ["jobs-new-version-dead-lettered", "jobs-new-version-handler-errors"]
        },
    },
}


def expect_start(stubber: Stubber, saved_version: str = "6", previous: list | None = None) -> None:
    stubber.add_response(
        "describe_auto_scaling_groups",
        {"AutoScalingGroups": [mixed_group(saved_version)]},
        {"AutoScalingGroupNames": [GROUP]},
    )
    stubber.add_response(
        "describe_instance_refreshes",
        {"InstanceRefreshes": previous or []},
        {"AutoScalingGroupName": GROUP, "MaxRecords": 1},
    )
    stubber.add_response("start_instance_refresh", {"InstanceRefreshId": "r-1"}, EXPECTED_START)


def test_rollout_leaves_the_saved_configuration_on_the_running_version(autoscaling):
    client, stubber = autoscaling
    # GIVEN a group saved on launch template version 6, and no refresh under way
    expect_start(stubber, previous=[refresh("Successful", "r-0", 100)])
    # WHEN version 7 is rolled out
    rollout = start_rollout(client, SETTINGS)
    # THEN the only write is StartInstanceRefresh carrying version 7 as the desired
    # configuration (no UpdateAutoScalingGroup: the Stubber refuses unexpected calls),
    # with checkpoints, the per-version alarms and auto rollback
    assert (rollout.refresh_id, rollout.from_version, rollout.to_version) == ("r-1", "6", "7")


def test_a_group_of_one_keeps_a_worker_in_service():
    # A replacement must be in service before the only instance drains.
    assert SETTINGS.min_healthy_percentage == 100
    assert SETTINGS.max_healthy_percentage == 200
    assert EXPECTED_START["Preferences"]["MaxHealthyPercentage"] > 100


def test_plain_launch_template_group_gets_a_launch_template_desired_configuration(autoscaling):
    client, stubber = autoscaling
    # GIVEN a group without a mixed instances policy
    group = mixed_group("6")
    del group["MixedInstancesPolicy"]
    group["LaunchTemplate"] = {"LaunchTemplateId": TEMPLATE_ID, "Version": "6"}
    stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
    stubber.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
    expected = {
        **EXPECTED_START,
        "DesiredConfiguration": {"LaunchTemplate": {"LaunchTemplateId": TEMPLATE_ID, "Version": "7"}},
    }
    stubber.add_response("start_instance_refresh", {"InstanceRefreshId": "r-2"}, expected)
    # WHEN version 7 is rolled out
    # THEN only the launch template's version differs from the group's own configuration
    assert start_rollout(client, SETTINGS).refresh_id == "r-2"


@pytest.mark.parametrize(
    ("saved", "previous", "message"),
    [
        ("7", [], "already runs version 7"),
        ("$Latest", [], "pin a number"),
        ("6", [refresh("InProgress", "r-0", 40)], "still InProgress"),
        ("6", [refresh("RollbackInProgress", "r-0", 10)], "still RollbackInProgress"),
    ],
)
def test_refuses_a_rollout_that_could_not_roll_back_cleanly(autoscaling, saved, previous, message):
    client, stubber = autoscaling
    # GIVEN a group in a state where a new refresh would be wrong
    stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [mixed_group(saved)]})
    if saved.isdigit() and saved != "7":
        stubber.add_response("describe_instance_refreshes", {"InstanceRefreshes": previous})
    # WHEN a rollout is asked for
    # THEN it refuses before starting anything, and says why
    with pytest.raises(RolloutError, match=message):
        start_rollout(client, SETTINGS)


@pytest.mark.parametrize(
    "change",
    [
        {"checkpoints": (50, 10, 100)},
        {"checkpoints": (10, 10, 100)},
        {"checkpoints": (10, 50)},
        {"checkpoints": (0, 100)},
        {"max_healthy_percentage": 250},
        {"min_healthy_percentage": 90, "max_healthy_percentage": 200},
        {"version": "$Latest"},
    ],
)
def test_invalid_settings_are_refused_before_any_call(autoscaling, change):
    client, _ = autoscaling
    settings = RolloutSettings(**{**SETTINGS.__dict__, **change})
    with pytest.raises(RolloutError):
        start_rollout(client, settings)


def test_rollback_asks_aws_to_return_to_the_saved_version(autoscaling):
    client, stubber = autoscaling
    stubber.add_response(
        "rollback_instance_refresh", {"InstanceRefreshId": "r-1"}, {"AutoScalingGroupName": GROUP}
    )
    assert rollback_rollout(client, GROUP) == "r-1"


def terraform_output(tmp_path) -> str:
    """The shape of `terraform output -json rollout` (see terraform/outputs.tf)."""
    path = tmp_path / "rollout.json"
    path.write_text(
        json.dumps(
            {
                "sensitive": False,
                "type": "object",
                "value": {
                    "group": GROUP,
                    "version": "7",
                    "alarms": list(SETTINGS.alarms),
                    "checkpoints": [10, 50, 100],
                    "checkpoint_delay": 600,
                    "min_healthy_percentage": 100,
                    "max_healthy_percentage": 200,
                    "instance_warmup": 120,
                },
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("final", "exit_code"),
    [("Successful", 0), ("RollbackSuccessful", 1), ("Cancelled", 1)],
)
def test_cli_follows_the_refresh_and_exits_by_its_outcome(autoscaling, tmp_path, final, exit_code):
    client, stubber = autoscaling
    # GIVEN the module's rollout output and a group on version 6
    expect_start(stubber)
    for state in (refresh("InProgress", percent=10), refresh(final, percent=100, reason="done")):
        stubber.add_response(
            "describe_instance_refreshes",
            {"InstanceRefreshes": [state]},
            {"AutoScalingGroupName": GROUP, "InstanceRefreshIds": ["r-1"]},
        )
    # WHEN `sqs-poller deploy start` runs to the end
    result = CliRunner().invoke(
        deploy,
        ["start", "--settings", terraform_output(tmp_path), "--poll", "0.1"],
        obj={"client": lambda: client},
    )
    # THEN it says where a rollback would go, prints each state, and exits by the outcome
    assert "version 6 -> 7 (a rollback returns to 6)" in result.output
    assert "InProgress | 10%" in result.output
    assert f"{final} | 100%" in result.output
    assert result.exit_code == exit_code, result.output


def test_cli_refuses_unknown_settings_with_exit_2(autoscaling, tmp_path):
    client, _ = autoscaling
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps({"group": GROUP, "version": "7", "checkpont_delay": 5}))
    result = CliRunner().invoke(deploy, ["start", "--settings", str(path)], obj={"client": lambda: client})
    assert result.exit_code == 2
    assert "checkpont_delay" in result.output


def test_cli_reports_what_aws_refused_with_exit_1(autoscaling, tmp_path):
    client, stubber = autoscaling
    # GIVEN AWS refuses the refresh (another one started meanwhile)
    stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [mixed_group("6")]})
    stubber.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
    stubber.add_client_error(
        "start_instance_refresh",
        service_error_code="InstanceRefreshInProgress",
        service_message="An Instance Refresh is already in progress",
        http_status_code=400,
    )
    # WHEN the rollout is started
    result = CliRunner().invoke(
        deploy,
        ["start", "--settings", terraform_output(tmp_path), "--no-wait"],
        obj={"client": lambda: client},
    )
    # THEN AWS's reason is printed and the exit status says it failed
    assert result.exit_code == 1
    assert "already in progress" in result.output
