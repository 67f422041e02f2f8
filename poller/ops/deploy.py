"""Roll a new launch template version out as a canary that really rolls back.

The group's saved configuration stays on the version that runs now; the refresh carries
the new version as its `DesiredConfiguration`. Auto Scaling saves the desired
configuration on the group only when the refresh succeeds, and a rollback (by alarm or
by hand) returns to what the group has saved: the previous version. (Had the group been
updated first, as the Terraform provider does, a rollback would restore the new one:
hashicorp/terraform-provider-aws#34189.)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
SUCCEEDED = ("Successful",)
# Any other terminal status (Failed, Cancelled, RollbackSuccessful, RollbackFailed) is a
# rollout that did not land.
TERMINAL = ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")


class RolloutError(Exception):
    """The rollout cannot start as asked; the message says why."""


@dataclass(frozen=True)
class RolloutSettings:
    group: str
    version: str
    alarms: tuple[str, ...] = ()
    checkpoints: tuple[int, ...] = (10, 50, 100)
    checkpoint_delay: int = 600
    min_healthy_percentage: int = 100
    max_healthy_percentage: int = 200
    instance_warmup: int = 120

    def validate(self) -> None:
        points = list(self.checkpoints)
        if not points or points != sorted(set(points)) or points[0] < 1 or points[-1] != 100:
            raise RolloutError("checkpoints must be unique, ascending, within 1..100, ending at 100")
        if not 0 <= self.min_healthy_percentage <= 100:
            raise RolloutError("min healthy percentage must be within 0..100")
        if not 100 <= self.max_healthy_percentage <= 200:
            raise RolloutError("max healthy percentage must be within 100..200")
        if self.max_healthy_percentage - self.min_healthy_percentage > 100:
            raise RolloutError("max healthy minus min healthy percentage must be at most 100")
        if not self.version.isdigit():
            raise RolloutError("version must be a launch template version number, never $Latest")


def saved_launch_template(group: Mapping[str, Any]) -> dict[str, str]:
    """The launch template the group has saved, whichever way it holds it."""
    if "MixedInstancesPolicy" in group:
        spec = group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    elif "LaunchTemplate" in group:
        spec = group["LaunchTemplate"]
    else:
        raise RolloutError(f"group {group['AutoScalingGroupName']} uses no launch template")
    return dict(spec)


def desired_configuration(group: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The group's own configuration with only the launch template version changed."""
    spec = saved_launch_template(group)
    template = {"LaunchTemplateId": spec["LaunchTemplateId"], "Version": version}
    if "MixedInstancesPolicy" in group:
        policy = copy.deepcopy(dict(group["MixedInstancesPolicy"]))
        policy["LaunchTemplate"]["LaunchTemplateSpecification"] = template
        return {"MixedInstancesPolicy": policy}
    return {"LaunchTemplate": template}


def refresh_preferences(settings: RolloutSettings) -> dict[str, Any]:
    preferences: dict[str, Any] = {
        "CheckpointPercentages": list(settings.checkpoints),
        "CheckpointDelay": settings.checkpoint_delay,
        "MinHealthyPercentage": settings.min_healthy_percentage,
        "MaxHealthyPercentage": settings.max_healthy_percentage,
        "InstanceWarmup": settings.instance_warmup,
        "SkipMatching": True,
        "AutoRollback": True,
        "ScaleInProtectedInstances": "Refresh",
        "StandbyInstances": "Terminate",
    }
    if settings.alarms:
        preferences["AlarmSpecification"] = {"Alarms": list(settings.alarms)}
    return preferences


def describe_group(client: Any, name: str) -> dict[str, Any]:
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise RolloutError(f"no Auto Scaling group named {name}")
    return groups[0]


def latest_refresh(client: Any, name: str) -> dict[str, Any] | None:
    refreshes = client.describe_instance_refreshes(AutoScalingGroupName=name, MaxRecords=1)
    found = refreshes.get("InstanceRefreshes", [])
    return found[0] if found else None


@dataclass(frozen=True)
class Rollout:
    refresh_id: str
    group: str
    from_version: str
    to_version: str


def start_rollout(client: Any, settings: RolloutSettings) -> Rollout:
    """Start the canary refresh; the group's saved configuration is left as it is."""
    settings.validate()
    group = describe_group(client, settings.group)
    current = saved_launch_template(group)
    if not str(current.get("Version", "")).isdigit():
        raise RolloutError(
            f"group {settings.group} is saved on version {current.get('Version')!r}: "
            "pin a number, or a rollback has nothing to return to"
        )
    if current["Version"] == settings.version:
        raise RolloutError(f"group {settings.group} already runs version {settings.version}")
    active = latest_refresh(client, settings.group)
    if active and active["Status"] in ACTIVE:
        raise RolloutError(
            f"refresh {active['InstanceRefreshId']} is still {active['Status']}: "
            "wait for it or roll it back first"
        )
    response = client.start_instance_refresh(
        AutoScalingGroupName=settings.group,
        Strategy="Rolling",
        DesiredConfiguration=desired_configuration(group, settings.version),
        Preferences=refresh_preferences(settings),
    )
    return Rollout(response["InstanceRefreshId"], settings.group, current["Version"], settings.version)


def watch_rollout(
    client: Any,
    group: str,
    refresh_id: str,
    poll_seconds: float = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Each state of the refresh until it ends (the last one yielded is terminal)."""
    while True:
        found = client.describe_instance_refreshes(
            AutoScalingGroupName=group, InstanceRefreshIds=[refresh_id]
        )["InstanceRefreshes"]
        if not found:
            raise RolloutError(f"refresh {refresh_id} of {group} is gone")
        yield found[0]
        if found[0]["Status"] in TERMINAL:
            return
        sleep(poll_seconds)


def rollback_rollout(client: Any, group: str) -> str:
    """Roll the group's active refresh back to the saved (previous) configuration."""
    return client.rollback_instance_refresh(AutoScalingGroupName=group)["InstanceRefreshId"]


def settings_from_mapping(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> RolloutSettings:
    """`terraform output -json rollout` (or any mapping of the same keys) plus CLI flags."""
    merged = {**values, **{key: value for key, value in overrides.items() if value is not None}}
    known = set(RolloutSettings.__dataclass_fields__)
    unknown = set(merged) - known
    if unknown:
        raise RolloutError(f"unknown rollout settings: {', '.join(sorted(unknown))}")
    for required in ("group", "version"):
        if not merged.get(required):
            raise RolloutError(f"rollout setting {required!r} is missing")
    return RolloutSettings(
        group=str(merged["group"]),
        version=str(merged["version"]),
        alarms=tuple(merged.get("alarms") or ()),
        checkpoints=tuple(int(point) for point in merged.get("checkpoints") or (10, 50, 100)),
        checkpoint_delay=int(merged.get("checkpoint_delay", 600)),
        min_healthy_percentage=int(merged.get("min_healthy_percentage", 100)),
        max_healthy_percentage=int(merged.get("max_healthy_percentage", 200)),
        instance_warmup=int(merged.get("instance_warmup", 120)),
    )


def describe_state(state: Mapping[str, Any]) -> str:
    """One line for the operator: status, progress, and the reason AWS gives."""
    parts: Sequence[str] = [
        str(state.get("Status")),
        f"{state.get('PercentageComplete', 0)}%",
        f"{state.get('InstancesToUpdate', '?')} to update",
    ]
    reason = state.get("StatusReason")
    return " | ".join([*parts, reason] if reason else parts)
