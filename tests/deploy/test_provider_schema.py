"""Every resource and data block of terraform/ and examples/complete against the AWS
provider's schema, for the lowest and the highest provider version versions.tf allows.

No provider binary can be downloaded here; the schemas come from the npm package
@cdktf/provider-aws (generated from the provider's schema), fetched and made small by
`make deploy-tools` into .cache/provider-schema/. A self-test plants one mistake of each
kind the check exists for and proves it is reported.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.provider_schema import check_directory, load_schema

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
EXAMPLE = MODULE / "examples" / "complete"
SCHEMAS = ROOT / ".cache" / "provider-schema"
# The schema versions scripts/install-deploy-tools.sh fetches: the lowest allowed, and
# the newest release of the highest major allowed.
LOWEST, HIGHEST = "5.85.0", "6.25.0"

if not os.environ.get("CI"):
    pytest.importorskip("hcl2")


def schema_path(version: str) -> Path:
    path = SCHEMAS / f"aws-{version}.json"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; `make deploy-tools` fetches it")
        pytest.skip(f"{path} is missing (outside CI only): run `make deploy-tools`")
    return path


_schemas: dict[str, dict] = {}


def schema(version: str) -> dict:
    if version not in _schemas:
        _schemas[version] = load_schema(schema_path(version))
    return _schemas[version]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_both_ends_of_the_allowed_provider_range_are_checked(directory):
    # GIVEN the provider constraint of the module and of its example
    text = (directory / "versions.tf").read_text()
    lower, upper = re.search(r'version\s*=\s*">=\s*([0-9.]+),\s*<\s*([0-9.]+)"', text).groups()
    # THEN the schemas checked are its lowest version and a release of its highest major
    assert schema(LOWEST)["provider_version"] == lower == LOWEST
    highest = schema(HIGHEST)["provider_version"]
    assert version_tuple(highest) < version_tuple(upper)
    assert version_tuple(highest)[0] == version_tuple(upper)[0] - 1


@pytest.mark.parametrize("version", [LOWEST, HIGHEST])
@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_block_fits_the_provider_schema(directory, version):
    # GIVEN every resource and data block, and every reference to one's attributes
    # WHEN they are checked against this provider version's schema
    errors = check_directory(schema(version), directory)
    # THEN nothing is unknown, misplaced, missing or referenced in vain
    assert errors == []


PLANTED = [
    (
        "compute.tf",
        "  max_size                  = var.max_size\n",
        "  max_sise                  = var.max_size\n",
        [
            "aws_autoscaling_group.this.max_sise: unknown argument",
            "aws_autoscaling_group.this: missing required argument max_size",
        ],
    ),
    (
        "compute.tf",
        "  metadata_options {\n",
        "  metadata_options = {\n",
        ["aws_launch_template.this.metadata_options: a block, written as an argument"],
    ),
    (
        "compute.tf",
        "  monitoring {\n    enabled = true\n  }\n",
        "  monitorring {\n    enabled = true\n  }\n",
        ["aws_launch_template.this.monitorring: unknown argument"],
    ),
    (
        "iam.tf",
        '  tags        = local.resource_tags["iam_role"]\n}\n\n# Session',
        '  tags        = local.resource_tags["iam_role"]\n'
        "  role_arn    = aws_iam_role.instance[0].arnn\n}\n\n# Session",
        [
            "aws_iam_instance_profile.instance.role_arn: unknown argument",
            "aws_iam_role.instance.arnn: no such attribute",
        ],
    ),
    (
        "logs.tf",
        "  name              = local.log_group_name\n",
        '  name              = local.log_group_name\n  tags_all {\n    a = "b"\n  }\n',
        ["aws_cloudwatch_log_group.daemon.tags_all: an argument, written as a block"],
    ),
    (
        "compute.tf",
        '  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"\n',
        "",
        ["aws_autoscaling_lifecycle_hook.drain: missing required argument lifecycle_transition"],
    ),
    (
        "compute.tf",
        "launch_template_specification[0].version,",
        "launch_template_specification[0].versoin,",
        ["aws_autoscaling_group.this: lifecycle.ignore_changes: no such argument"],
    ),
    (
        "main.tf",
        'data "aws_region" "current" {}',
        'data "aws_regions" "current" {}\ndata "aws_regoin" "other" {}',
        ["data.aws_regoin.other: no such data source"],
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), PLANTED)
def test_the_check_catches_planted_mistakes(tmp_path, file, old, new, expected):
    # GIVEN a copy of the module with one planted mistake (proves the check can fail)
    copy = tmp_path / "module"
    shutil.copytree(MODULE, copy, ignore=shutil.ignore_patterns("examples"))
    text = (copy / file).read_text()
    assert text.count(old) == 1, f"the planted mistake no longer applies to {file}"
    (copy / file).write_text(text.replace(old, new))
    # WHEN it is checked against the lowest allowed schema
    errors = check_directory(schema(LOWEST), copy)
    # THEN exactly that mistake is reported
    for message in expected:
        assert any(message in error for error in errors), (message, errors)
    assert len(errors) == len(expected), errors
