"""The systemd units in systemd/: systemd itself checks them, we check the contract.

`systemd-analyze verify` only warns (exit 0) on unknown keys, bad values or a missing
ExecStart binary, so any output at all counts as a failure here.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
TEMPLATE = SYSTEMD / "sqs-poller@.service"
EXPORTER = SYSTEMD / "sqs-poller-journal-export.service"
UNHEALTHY = SYSTEMD / "sqs-poller-unhealthy@.service"
EXPORT_SCRIPT = ROOT / "packer" / "files" / "export-journal.sh"
INSTALLED_BINARY = "/opt/sqs-poller/venv/bin/sqs-poller"
INSTALLED_PYTHON = "/opt/sqs-poller/venv/bin/python"
INSTALLED_EXPORTER = "/opt/sqs-poller/bin/export-journal"
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
MAX_EXPOSURE = 1.5


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; CI must have it (systemd provides it)")
    pytest.skip(f"{name} is not installed (outside CI only)")


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


@pytest.fixture
def instantiated_units(tmp_path: Path) -> list[Path]:
    """The template as instance `test`, pointing at a real executable.

    verify resolves ExecStart and warns when the binary is missing; the package is not
    installed into /opt on a build machine, so a stand-in executable at a temp path takes
    its place. Nothing else in the unit changes.
    """
    fake = tmp_path / "bin" / "sqs-poller"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = TEMPLATE.read_text()
    assert INSTALLED_BINARY in text, "ExecStart must run the virtualenv's console script"
    instance = tmp_path / "sqs-poller@test.service"
    instance.write_text(text.replace(INSTALLED_BINARY, str(fake)))
    exporter = tmp_path / EXPORTER.name
    assert INSTALLED_EXPORTER in EXPORTER.read_text()
    exporter.write_text(EXPORTER.read_text().replace(INSTALLED_EXPORTER, str(EXPORT_SCRIPT)))
    unhealthy = tmp_path / "sqs-poller-unhealthy@test.service"
    assert INSTALLED_PYTHON in UNHEALTHY.read_text()
    unhealthy.write_text(UNHEALTHY.read_text().replace(INSTALLED_PYTHON, str(fake)))
    return [instance, exporter, unhealthy]


def run_verify(units: list[Path]) -> subprocess.CompletedProcess:
    tool = require_tool("systemd-analyze")
    return subprocess.run(
        [tool, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units[0].parent,
    )


def test_verify_prints_nothing(instantiated_units):
    # GIVEN the units as they would be installed
    # WHEN systemd checks them
    result = run_verify(instantiated_units)
    # THEN it has nothing to say about them
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stdout + result.stderr


def test_verify_would_catch_a_bad_key(instantiated_units):
    # GIVEN the same unit with one misspelt directive (proves the check above can fail)
    instance = instantiated_units[0]
    instance.write_text(instance.read_text().replace("KillMode=", "KilMode=", 1))
    # WHEN systemd checks it
    result = run_verify([instance])
    # THEN it warns about exactly that key
    assert "KilMode" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "name", ["sqs-poller@test.service", EXPORTER.name, "sqs-poller-unhealthy@test.service"]
)
def test_security_exposure_is_low(instantiated_units, name):
    # GIVEN an installed unit
    unit = next(path for path in instantiated_units if path.name == name)
    # WHEN systemd scores its sandbox offline
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
    )
    # THEN the overall exposure is at most 1.5 (and the threshold exit code agrees)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_is_a_notify_service_with_a_watchdog():
    unit = read_unit(TEMPLATE)
    assert one(unit, "Service", "Type") == "notify"
    # The supervisor alone reports READY/WATCHDOG/STOPPING; workers can't fake liveness.
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert 0 < seconds(one(unit, "Service", "WatchdogSec")) <= 300


def test_config_file_comes_from_the_instance_name():
    unit = read_unit(TEMPLATE)
    exec_start = one(unit, "Service", "ExecStart").split()
    assert exec_start[:2] == [INSTALLED_BINARY, "run"]
    assert exec_start[exec_start.index("--config") + 1] == "/etc/sqs-poller/%i.toml"
    assert one(unit, "Unit", "ConditionPathExists") == "/etc/sqs-poller/%i.toml"


def test_restarts_on_failure_but_not_on_bad_config_or_handler():
    unit = read_unit(TEMPLATE)
    assert one(unit, "Service", "Restart") == "on-failure"
    assert set(one(unit, "Service", "RestartPreventExitStatus").split()) == {"2", "3"}


def test_stop_waits_for_the_drain():
    # GIVEN the daemon's defaults: shutdown_grace 30 s after a long poll of up to 20 s, and
    # the settle margin the Terraform module adds to its own derived drop-in
    shutdown_grace, wait_time_seconds, settle_margin = 30, 20, 40
    unit = read_unit(TEMPLATE)
    # THEN systemd signals only the supervisor and waits as long as the drain can take
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    timeout = seconds(one(unit, "Service", "TimeoutStopSec"))
    assert timeout >= shutdown_grace + wait_time_seconds + settle_margin


def test_metrics_directory_is_the_runtime_directory():
    unit = read_unit(TEMPLATE)
    runtime_dir = one(unit, "Service", "RuntimeDirectory")
    env = dict(value.split("=", 1) for value in unit["Service"]["Environment"])
    assert env["PROMETHEUS_MULTIPROC_DIR"] == f"%t/{runtime_dir}"
    assert "%i" in runtime_dir, "two instances must not share metrics files"


def test_hardening_keeps_network_and_notify_socket():
    unit = read_unit(TEMPLATE)
    service = unit["Service"]
    assert one(unit, "Service", "DynamicUser") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert "@system-service" in service["SystemCallFilter"]
    families = set(one(unit, "Service", "RestrictAddressFamilies").split())
    # SQS and IMDS (169.254.169.254) over IP; sd_notify and journald over AF_UNIX.
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert service.get("PrivateNetwork", ["no"])[-1] == "no"
    assert "IPAddressDeny" not in service


def test_exporter_follows_only_the_poller_units():
    unit = read_unit(EXPORTER)
    assert one(unit, "Service", "ExecStart") == INSTALLED_EXPORTER
    script = "\n".join(
        line for line in EXPORT_SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    identifier = one(read_unit(TEMPLATE), "Service", "SyslogIdentifier")
    assert f"--identifier={identifier}" in script
    assert "--output=cat" in script, "CloudWatch metric filters parse the raw JSON line"
    assert "--cursor-file=" in script
    assert "--follow" not in script, "journalctl 252 never writes the cursor in follow mode"
    assert one(unit, "Service", "SupplementaryGroups") == "systemd-journal"
    # Both units log as sqs-poller, so the unhealthy report reaches CloudWatch too.
    assert one(read_unit(UNHEALTHY), "Service", "SyslogIdentifier") == identifier


def test_a_daemon_stopped_for_good_triggers_the_unhealthy_report():
    # GIVEN the daemon unit's failure hook
    hook = one(read_unit(TEMPLATE), "Unit", "OnFailure")
    # THEN it starts the unhealthy unit of the same instance, which runs the reporter
    assert hook == "sqs-poller-unhealthy@%i.service"
    assert (SYSTEMD / hook.replace("%i", "")).exists()
    unhealthy = read_unit(UNHEALTHY)
    assert one(unhealthy, "Service", "Type") == "oneshot"
    assert one(unhealthy, "Service", "ExecStart") == f"{INSTALLED_PYTHON} -m poller.ops.unhealthy"
    assert (ROOT / "poller" / "ops" / "unhealthy.py").exists()
    # AND the statuses it treats as permanent are exactly the ones systemd does not restart
    from poller.ops.unhealthy import PERMANENT_EXIT_STATUSES

    prevented = set(one(read_unit(TEMPLATE), "Service", "RestartPreventExitStatus").split())
    assert set(PERMANENT_EXIT_STATUSES) == prevented
    assert "Install" not in unhealthy, "started by OnFailure= only, never enabled"


def test_units_parse_as_ini():
    # configparser would choke on stray text systemd might silently ignore
    for path in (TEMPLATE, EXPORTER, UNHEALTHY):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read_string(path.read_text())
        assert {"Unit", "Service"} <= set(parser.sections())


# --- the sandbox, exercised --------------------------------------------------------------
# systemd is not PID 1 here, so the unit cannot really start. Its system call sandbox is
# seccomp, though, and seccomp needs no systemd: the helper below installs the filters the
# unit's SystemCallFilter=/SystemCallErrorNumber=/MemoryDenyWriteExecute=/
# RestrictAddressFamilies= lines describe (groups expanded by systemd-analyze itself), then
# execs a command. `sqs-poller demo` under it runs the real daemon: supervisor, spawned
# workers, boto3, prometheus multiprocess mmap files, loopback SQS.

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-seccomp installs

SANDBOX_HELPER = r"""
import errno, json, mmap, os, socket, subprocess, sys
import seccomp

spec = json.loads(os.environ.pop("SANDBOX_SPEC"))

def expand(item):
    if not item.startswith("@"):
        return {item}
    listing = subprocess.run(["systemd-analyze", "syscall-filter", item],
                             capture_output=True, text=True, check=True).stdout
    names = set()
    for line in listing.splitlines():
        entry = line.strip()
        if line.startswith("    ") and not entry.startswith("#"):
            names |= expand(entry)
    return names

def add(flt, action, name, *args):
    try:
        flt.add_rule(action, name, *args)
    except (ValueError, RuntimeError, OSError):
        pass  # not a system call on this architecture

allowed = set().union(*map(expand, spec["allow"])) - set().union(set(), *map(expand, spec["deny"]))
allow_list = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for name in sorted(allowed):
    add(allow_list, seccomp.ALLOW, name)

filters = []
if spec["mdwe"]:
    wx, x = mmap.PROT_WRITE | mmap.PROT_EXEC, mmap.PROT_EXEC
    no_wx = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    add(no_wx, seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
    for name in ("mprotect", "pkey_mprotect"):
        add(no_wx, seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
    add(no_wx, seccomp.ERRNO(errno.EPERM), "shmat",
        seccomp.Arg(2, seccomp.MASKED_EQ, 0o100000, 0o100000))
    filters.append(no_wx)

families = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
permitted = {getattr(socket, name) for name in spec["families"]}
for family in set(range(64)) - permitted:
    add(families, seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
filters.append(families)

# The allow list goes last: it does not allow seccomp() itself.
for flt in filters + [allow_list]:
    flt.load()
os.execvp(sys.argv[1], sys.argv[1:])
"""


def sandbox_spec() -> dict:
    service = read_unit(TEMPLATE)["Service"]
    allow, deny = [], []
    for value in service["SystemCallFilter"]:
        if value.startswith("~"):
            deny += value[1:].split()
        else:
            allow += value.split()
    assert one(read_unit(TEMPLATE), "Service", "SystemCallErrorNumber") == "EPERM"
    return {
        "allow": allow,
        "deny": deny,
        "families": one(read_unit(TEMPLATE), "Service", "RestrictAddressFamilies").split(),
        "mdwe": service.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes",
    }


@pytest.fixture
def sandboxed(tmp_path):
    """argv prefix that runs a command inside the unit's seccomp sandbox."""
    require_tool("systemd-analyze")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("python3-seccomp is missing; `make deploy-tools` installs it")
        pytest.skip("python3-seccomp is not installed (outside CI only)")
    helper = tmp_path / "sandbox.py"
    helper.write_text(SANDBOX_HELPER)
    os.environ["SANDBOX_SPEC"] = json.dumps(sandbox_spec())
    yield [SYSTEM_PYTHON, str(helper)]
    os.environ.pop("SANDBOX_SPEC", None)


def test_sandbox_emulation_refuses_what_the_unit_forbids(sandboxed, tmp_path):
    # GIVEN a Python inside the emulated sandbox (proves the emulation has teeth)
    probe = (
        "import mmap, os, socket\n"
        "checks = {\n"
        "  'wx_mmap': lambda: mmap.mmap(-1, 4096, prot=7),\n"
        "  'af_packet': lambda: socket.socket(17, socket.SOCK_RAW),\n"
        "  'chroot': lambda: os.chroot('/'),\n"
        "  'setpriority': lambda: os.setpriority(os.PRIO_PROCESS, 0, 5),\n"
        "  'af_inet': lambda: socket.socket().close(),\n"
        "}\n"
        "for name, check in checks.items():\n"
        "    try:\n"
        "        check(); print(name, 'allowed')\n"
        "    except OSError:\n"
        "        print(name, 'refused')\n"
    )
    # WHEN it tries things the unit forbids, and one it allows
    result = subprocess.run(
        [*sandboxed, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    # THEN only the allowed one succeeds
    assert result.returncode == 0, result.stderr
    outcome = dict(line.split() for line in result.stdout.splitlines())
    assert outcome == {
        "wx_mmap": "refused",
        "af_packet": "refused",
        "chroot": "refused",
        "setpriority": "refused",
        "af_inet": "allowed",
    }


def test_daemon_runs_inside_the_units_seccomp_sandbox(sandboxed, tmp_path):
    # GIVEN the package's console script, next to the interpreter running the tests
    command = Path(sys.executable).with_name("sqs-poller")
    if not command.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{command} is missing; `make test` installs the package")
        pytest.skip("the sqs-poller package is not installed in this interpreter's venv")
    # WHEN the whole demo (supervisor, workers, local SQS, metrics) runs inside the sandbox
    result = subprocess.run(
        [*sandboxed, str(command), "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    # THEN it finishes cleanly: nothing it does needs a forbidden system call
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Operation not permitted" not in output
