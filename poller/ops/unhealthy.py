"""Report this instance unhealthy to Auto Scaling when the daemon has stopped for good, so
the group replaces it instead of counting a worker that does no work.

Run by `sqs-poller-unhealthy@.service`, the daemon unit's `OnFailure=`: systemd hands the
failed unit's outcome over as MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE and
MONITOR_EXIT_STATUS (systemd >= 251).

    python -m poller.ops.unhealthy [--imds-url URL] [--endpoint-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence

# The unit's RestartPreventExitStatus=: bad config, a handler that cannot be loaded.
PERMANENT_EXIT_STATUSES = ("2", "3")


def is_stopped_for_good(result: str, exit_code: str, exit_status: str) -> tuple[bool, str]:
    """(stopped for good, why), from the failed unit's outcome as systemd reports it."""
    if result == "start-limit-hit":
        return True, "restarted too often (start limit hit)"
    if exit_code == "exited" and exit_status in PERMANENT_EXIT_STATUSES:
        return True, f"exited with status {exit_status}, which systemd does not restart"
    return False, f"result {result or '?'}, {exit_code or '?'} {exit_status or '?'}: systemd restarts it"


def report_unhealthy(imds_url: str, endpoint_url: str) -> str:
    """SetInstanceHealth(Unhealthy) for this instance; returns its id."""
    from poller.aws import aws_client
    from poller.daemon.lifecycle import Imds

    imds = Imds(imds_url)
    instance_id = imds.get("/latest/meta-data/instance-id")
    region = imds.get("/latest/meta-data/placement/region")
    client = aws_client("autoscaling", region, endpoint_url)
    client.set_instance_health(
        InstanceId=instance_id, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
    )
    return instance_id


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poller.ops.unhealthy", description=__doc__)
    parser.add_argument("--imds-url", default="http://169.254.169.254")
    parser.add_argument("--endpoint-url", default="", help="An Auto Scaling-compatible endpoint.")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    unit = env.get("MONITOR_UNIT", "sqs-poller")
    stopped, why = is_stopped_for_good(
        env.get("MONITOR_SERVICE_RESULT", ""),
        env.get("MONITOR_EXIT_CODE", ""),
        env.get("MONITOR_EXIT_STATUS", ""),
    )
    if not stopped:
        print(json.dumps({"level": "info", "event": "instance_left_healthy", "unit": unit, "reason": why}))
        return 0
    try:
        instance_id = report_unhealthy(args.imds_url, args.endpoint_url)
    except Exception as exc:  # nothing else will report it: say so loudly, fail the unit
        print(
            json.dumps(
                {
                    "level": "error",
                    "event": "instance_unhealthy_report_failed",
                    "unit": unit,
                    "reason": why,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
        )
        return 1
    print(
        json.dumps(
            {
                "level": "warning",
                "event": "instance_reported_unhealthy",
                "unit": unit,
                "instance_id": instance_id,
                "reason": why,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
