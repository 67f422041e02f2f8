"""The Packer template in packer/: packer's own checks, then the image's invariants.

Debian's packer 1.6.6 validates offline but predates two things the template needs:
`required_plugins` (kept in plugins.pkr.hcl, left out of validation) and the newer
amazon-ebs arguments `imds_support` and `metadata_options` (removed from a temp copy for
validation, and asserted present in the real file here). Everything else, including
file and script paths, is validated by packer itself.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.hcl import load_hcl

try:
    import hcl2  # noqa: F401 - a missing python-hcl2 is reported below
except ImportError:  # pragma: no cover - the [dev] extras install it
    if os.environ.get("CI"):
        raise
    pytest.skip("python-hcl2 is not installed (outside CI only)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
PACKER = ROOT / "packer"
TEMPLATE = PACKER / "sqs-poller.pkr.hcl"
FILES = PACKER / "files"
PROVISION = PACKER / "scripts" / "provision.sh"
CLEANUP = PACKER / "scripts" / "cleanup.sh"

# One pattern per argument 1.6.6 does not know; each must match exactly once.
NEWER_THAN_PACKER_1_6_6 = {
    "imds_support": r"\n[ \t]*imds_support[ \t]*=[^\n]*",
    "metadata_options": r"\n[ \t]*metadata_options[ \t]*\{[^{}]*\}",
}


def require_packer() -> str:
    path = shutil.which("packer")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("packer is not installed; `make deploy-tools` installs it")
    pytest.skip("packer is not installed (outside CI only): run `make deploy-tools`")


def load(path: Path) -> dict:
    return load_hcl(path)


@pytest.fixture(scope="module")
def template() -> dict:
    return load(TEMPLATE)


@pytest.fixture(scope="module")
def source(template) -> dict:
    return template["source"][0]["amazon-ebs"]["al2023"]


@pytest.fixture(scope="module")
def provisioners(template) -> list[tuple[str, dict]]:
    return [(kind, body) for p in template["build"][0]["provisioner"] for kind, body in p.items()]


def validation_tree(tmp_path: Path, extra: str = "") -> Path:
    """The repository's packer/ (less plugins.pkr.hcl and the newer arguments), with
    systemd/ and docs/ beside it, so every relative path resolves as in a real build."""
    packer_dir = tmp_path / "packer"
    packer_dir.mkdir()
    for name in ("files", "scripts"):
        shutil.copytree(PACKER / name, packer_dir / name)
    shutil.copytree(ROOT / "systemd", tmp_path / "systemd")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    for path in PACKER.glob("*.pkr.hcl"):
        text = path.read_text()
        if "required_plugins" in text:
            assert path.name == "plugins.pkr.hcl", f"{path.name}: required_plugins belongs apart"
            continue
        if path == TEMPLATE:
            for name, pattern in NEWER_THAN_PACKER_1_6_6.items():
                text, count = re.subn(pattern, "", text)
                assert count == 1, f"{name} should appear exactly once in {path.name}"
            text = text.replace("  encrypt_boot = true", "  encrypt_boot = true\n" + extra, 1)
        (packer_dir / path.name).write_text(text)
    return packer_dir


def run_packer(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_packer(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"},
    )


def test_packer_fmt_check_passes():
    # GIVEN every packer file, plugins included
    # WHEN packer fmt checks them
    result = run_packer("fmt", "-check", ".", cwd=PACKER)
    # THEN nothing needs reformatting
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_packer_validate_passes(tmp_path):
    # GIVEN the template as packer 1.6.6 can read it
    tree = validation_tree(tmp_path)
    # WHEN packer validates it offline (syntax, arguments, file and script paths)
    result = run_packer("validate", ".", cwd=tree)
    # THEN it is valid
    assert result.returncode == 0, result.stdout + result.stderr


def test_packer_validate_would_catch_an_unknown_argument(tmp_path):
    # GIVEN the same template with a misspelt argument (proves the check above can fail)
    tree = validation_tree(tmp_path, extra="  encrypt_bot = true\n")
    # WHEN packer validates it
    result = run_packer("validate", ".", cwd=tree)
    # THEN it names the argument
    assert result.returncode != 0
    assert "encrypt_bot" in result.stdout + result.stderr


def test_required_plugins_pin_the_amazon_plugin():
    plugins = load(PACKER / "plugins.pkr.hcl")["packer"][0]["required_plugins"][0]
    assert plugins["amazon"]["source"] == "github.com/hashicorp/amazon"
    assert plugins["amazon"]["version"].startswith(">=")


def test_base_image_is_current_amazon_linux_2023(source):
    ami_filter = source["source_ami_filter"][0]
    assert ami_filter["owners"] == ["amazon"]
    assert ami_filter["most_recent"] is True
    assert ami_filter["filters"]["name"].startswith("al2023-ami-2023.")
    assert source["ssh_username"] == "ec2-user"


def test_base_image_kernel_flavour_is_pinned(source):
    # GIVEN the AMI name filter (AL2023 publishes kernel-6.1 and newer flavours side by side)
    name = source["source_ami_filter"][0]["filters"]["name"]
    variables = load(PACKER / "variables.pkr.hcl")["variable"]
    flavour = next(v["kernel_flavour"] for v in variables if "kernel_flavour" in v)
    # THEN most_recent can only pick among images of one kernel flavour
    assert name == "al2023-ami-2023.*-${var.kernel_flavour}-${var.architecture}"
    assert re.fullmatch(r"kernel-\d+\.\d+", flavour["default"])
    # AND the pattern matches real AL2023 names of that flavour only
    pattern = re.escape(name).replace(r"\*", ".*")
    pattern = pattern.replace(re.escape("${var.kernel_flavour}"), "kernel-6.1")
    pattern = pattern.replace(re.escape("${var.architecture}"), "x86_64")
    assert re.fullmatch(pattern, "al2023-ami-2023.6.20241010.0-kernel-6.1-x86_64")
    assert not re.fullmatch(pattern, "al2023-ami-2023.6.20241010.0-kernel-6.12-x86_64")
    assert not re.fullmatch(pattern, "al2023-ami-minimal-2023.6.20241010.0-kernel-6.1-x86_64")


def test_copies_to_other_regions_can_use_their_own_keys(source):
    # A regional KMS key cannot encrypt the copy in another region.
    assert source["region_kms_key_ids"] == "${var.region_kms_key_ids}"
    variables = load(PACKER / "variables.pkr.hcl")["variable"]
    keys = next(v["region_kms_key_ids"] for v in variables if "region_kms_key_ids" in v)
    assert keys["type"] == "${map(string)}" and keys["default"] == {}


def test_image_is_imdsv2_only(source):
    # The newer arguments left out of the 1.6.6 validation are in the real template.
    assert source["imds_support"] == "v2.0"
    metadata = source["metadata_options"][0]
    assert metadata["http_tokens"] == "required"
    assert metadata["http_put_response_hop_limit"] == 1


def test_root_volume_and_snapshot_are_encrypted_gp3(source):
    volume = source["launch_block_device_mappings"][0]
    assert volume["device_name"] == "/dev/xvda"
    assert volume["volume_type"] == "gp3"
    assert volume["encrypted"] is True
    assert source["encrypt_boot"] is True


def test_wheel_is_built_from_this_repository(template, provisioners):
    kind, local = provisioners[0]
    assert kind == "shell-local"
    assert any("pip wheel --no-deps" in line and "local.repo_root" in line for line in local["inline"])
    assert template["locals"][0]["repo_root"] == "${path.root}/.."
    uploads = {body["source"]: body for kind, body in provisioners if kind == "file"}
    assert uploads["${local.dist_dir}/"]["generated"] is True


def test_build_user_keys_are_removed_last(source, provisioners):
    assert source["ssh_clear_authorized_keys"] is True
    kind, last = [p for p in provisioners if p[0] == "shell"][-1]
    assert last["script"] == "${path.root}/scripts/cleanup.sh"
    cleanup = CLEANUP.read_text()
    assert "rm -f /home/ec2-user/.ssh/authorized_keys /root/.ssh/authorized_keys" in cleanup
    assert "/etc/ssh/ssh_host_" in cleanup
    # An empty machine-id is regenerated at first boot: no two instances share the image's.
    assert "truncate -s 0 /etc/machine-id" in cleanup


def test_provisioning_installs_every_unit_and_the_exporter():
    script = PROVISION.read_text()
    for unit in (ROOT / "systemd").glob("*.service"):
        assert f'"$SRC/systemd/{unit.name}" /etc/systemd/system/' in script, unit.name
    assert '"$SRC/files/export-journal.sh" "$PREFIX/bin/export-journal"' in script
    exporter = (ROOT / "systemd/sqs-poller-journal-export.service").read_text()
    assert "ExecStart=/opt/sqs-poller/bin/export-journal" in exporter


def test_provisioning_installs_a_pinned_virtualenv_the_units_and_the_agent():
    script = PROVISION.read_text()
    assert re.search(r"dnf -y -q install .*python3\.11 .*amazon-cloudwatch-agent", script)
    assert "VENV=$PREFIX/venv" in script and "PREFIX=/opt/sqs-poller" in script
    assert 'python3.11 -m venv "$VENV"' in script
    assert '--constraint "$SRC/files/constraints.txt"' in script
    assert "--only-binary=:all:" in script
    for installed in (
        '"$SRC/systemd/sqs-poller@.service" /etc/systemd/system/',
        '"$SRC/files/poller.toml.example" /etc/sqs-poller/poller.toml.example',
        '"$SRC/files/amazon-cloudwatch-agent.json"',
        '"$SRC/files/configure-cloudwatch-agent.sh" "$PREFIX/bin/configure-cloudwatch-agent"',
    ):
        assert installed in script, installed
    # The unit runs exactly the console script this installs.
    assert "/opt/sqs-poller/venv/bin/sqs-poller run" in (ROOT / "systemd/sqs-poller@.service").read_text()


def test_shell_scripts_parse():
    for script in (PROVISION, CLEANUP, FILES / "configure-cloudwatch-agent.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    subprocess.run(["sh", "-n", str(FILES / "export-journal.sh")], check=True)


def requirement_names_and_specs() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requirements = {}
    for line in parser["options"]["install_requires"].strip().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)", line.strip())
        requirements[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return requirements


def test_every_runtime_dependency_is_pinned():
    from packaging.specifiers import SpecifierSet

    # GIVEN the package's install_requires and the AMI's constraints
    pins = {}
    for line in (FILES / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    # THEN each dependency has an exact version that satisfies the package's own range
    for name, spec in requirement_names_and_specs().items():
        assert name in pins, f"{name} is not pinned in packer/files/constraints.txt"
        assert SpecifierSet(spec).contains(pins[name]), f"{name}=={pins[name]} violates {spec}"


def test_cloudwatch_agent_ships_the_exported_journal_and_scrapes_metrics():
    config = json.loads((FILES / "amazon-cloudwatch-agent.json").read_text())
    (collected,) = config["logs"]["logs_collected"]["files"]["collect_list"]
    # The exporter unit writes the poller's journal lines to $LOGS_DIRECTORY/journal.log.
    exporter = (ROOT / "systemd/sqs-poller-journal-export.service").read_text()
    assert "LogsDirectory=sqs-poller" in exporter
    assert 'output="$LOGS_DIRECTORY/journal.log"' in (FILES / "export-journal.sh").read_text()
    assert collected["file_path"] == "/var/log/sqs-poller/journal.log"
    assert collected["log_group_name"] == "@LOG_GROUP@"
    # The scaling figures (EMF lines) feed a policy on 10-s periods: ship them every 5 s
    assert config["logs"]["force_flush_interval"] <= 5

    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == "/opt/sqs-poller/share/prometheus.yaml"
    assert '"$SRC/files/prometheus.yaml" "$PREFIX/share/prometheus.yaml"' in PROVISION.read_text()
    scrape = (FILES / "prometheus.yaml").read_text()
    assert 'targets: ["127.0.0.1:9102"]' in scrape and "metrics_path: /metrics" in scrape
    selectors = json.dumps(prometheus["emf_processor"]["metric_declaration"])
    assert "sqs_poller_messages_total" in selectors
    # A paused host shows in CloudWatch (see docs/operations.md, Downstream outages)
    assert "^sqs_poller_breaker_open$" in selectors and "sqs_poller_breaker_transitions_total" in selectors


def test_configure_script_fills_the_template(tmp_path):
    # GIVEN the agent template and a stand-in for amazon-cloudwatch-agent-ctl
    ctl = tmp_path / "ctl"
    ctl.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/ctl.args"\n')
    ctl.chmod(0o755)
    output = tmp_path / "agent.json"
    env = {
        **os.environ,
        "TEMPLATE": str(FILES / "amazon-cloudwatch-agent.json"),
        "OUTPUT": str(output),
        "AGENT_CTL": str(ctl),
    }
    script = str(FILES / "configure-cloudwatch-agent.sh")
    # WHEN user data calls it with one deployment's names
    subprocess.run(
        [script, "/sqs-poller/jobs", "/sqs-poller/jobs/prometheus", "SQSPoller/jobs"],
        env=env,
        check=True,
    )
    # THEN the agent gets a valid config with those names and is told to load it
    config = json.loads(output.read_text())
    assert "@" not in output.read_text()
    files = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert files[0]["log_group_name"] == "/sqs-poller/jobs"
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["log_group_name"] == "/sqs-poller/jobs/prometheus"
    assert prometheus["emf_processor"]["metric_namespace"] == "SQSPoller/jobs"
    assert (tmp_path / "ctl.args").read_text().split() == [
        "-a",
        "fetch-config",
        "-m",
        "ec2",
        "-s",
        "-c",
        f"file:{output}",
    ]
    # AND a name that could break the JSON is refused
    bad = subprocess.run([script, 'x"y', "a", "b"], env=env, capture_output=True)
    assert bad.returncode == 2


def test_example_config_is_one_the_daemon_accepts():
    raw = tomllib.loads((FILES / "poller.toml.example").read_text())
    try:
        from poller.configload import build_config
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the poller package is not importable (outside CI only)")
    config = build_config(raw, env={}, source="poller.toml.example")
    assert config.metrics.listen == "127.0.0.1:9102"
