"""The journal exporter on this machine's systemd (252, as on Amazon Linux 2023): a
restart resumes after the last line it exported, and the follow mode it replaced loses
its cursor here (systemd#26746). Journal files are written by systemd-journal-remote
from export-format entries; the exporter reads them with --directory=."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_systemd import EXPORT_SCRIPT, JOURNAL_REMOTE, require_tool


def systemd_version() -> int:
    out = subprocess.run(["journalctl", "--version"], capture_output=True, text=True).stdout
    return int(re.match(r"systemd (\d+)", out)[1])


@pytest.fixture
def journal(tmp_path):
    """A journal directory the test appends sqs-poller (and other) entries to."""
    if not Path(JOURNAL_REMOTE).exists():
        if os.environ.get("CI"):
            pytest.fail("systemd-journal-remote is missing; `make deploy-tools` installs it")
        pytest.skip("systemd-journal-remote is not installed (outside CI only)")
    require_tool("journalctl")
    directory = tmp_path / "journal"
    directory.mkdir()
    boot = "0" * 31 + "1"
    counter = iter(range(1, 10_000))

    def append(*events: str, identifier: str = "sqs-poller") -> None:
        lines = []
        for event in events:
            index = next(counter)
            lines.append(
                f"__REALTIME_TIMESTAMP={1_700_000_000_000_000 + index}\n"
                f"__MONOTONIC_TIMESTAMP={index}\n_BOOT_ID={boot}\n_MACHINE_ID={boot}\n"
                f"SYSLOG_IDENTIFIER={identifier}\n"
                f'MESSAGE={{"event": "{event}"}}\n\n'
            )
        source = tmp_path / "entries.export"
        source.write_text("".join(lines))
        subprocess.run(
            [JOURNAL_REMOTE, f"--output={directory}/remote.journal", str(source)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    append.directory = directory
    return append


def start_exporter(tmp_path: Path, directory: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "LOGS_DIRECTORY": str(tmp_path / "logs"),
        "EXPORT_INTERVAL_SECONDS": "0.2",
    }
    for name in ("state", "logs"):
        (tmp_path / name).mkdir(exist_ok=True)
    return subprocess.Popen(["sh", str(EXPORT_SCRIPT), f"--directory={directory}"], env=env)


def exported(tmp_path: Path) -> list[str]:
    path = tmp_path / "logs" / "journal.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_for_lines(tmp_path: Path, count: int, timeout: float = 30) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = exported(tmp_path)
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    return exported(tmp_path)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_exporter_restart_resumes_after_the_last_exported_line(journal, tmp_path):
    # GIVEN the daemon has logged three lines, and one line of another unit
    journal("first", "second", "third")
    journal("not ours", identifier="sshd")
    # WHEN the exporter runs, is stopped by systemd (SIGTERM), the daemon logs two more
    # lines, and the exporter starts again
    exporter = start_exporter(tmp_path, journal.directory)
    assert len(wait_for_lines(tmp_path, 3)) == 3
    stop(exporter)
    journal("fourth", "fifth")
    exporter = start_exporter(tmp_path, journal.directory)
    lines = wait_for_lines(tmp_path, 5)
    stop(exporter)
    # THEN every line of the daemon is in the file exactly once, in order, and nothing else
    assert [json.loads(line)["event"] for line in lines] == ["first", "second", "third", "fourth", "fifth"]
    assert (tmp_path / "state" / "cursor").read_text().startswith("s=")


def test_follow_mode_loses_the_cursor_on_this_systemd(journal, tmp_path):
    # GIVEN journalctl --follow with a cursor file, as the exporter used to run
    if systemd_version() >= 254:
        pytest.skip("systemd >= 254 writes the cursor on SIGTERM (systemd#26746)")
    journal("first")
    cursor = tmp_path / "cursor"
    follower = subprocess.Popen(
        [
            "journalctl",
            f"--directory={journal.directory}",
            "--follow",
            "--output=cat",
            "--identifier=sqs-poller",
            f"--cursor-file={cursor}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    # WHEN it has printed the line and systemd stops it
    assert json.loads(follower.stdout.readline())["event"] == "first"
    stop(follower)
    # THEN no cursor was written: a restart would send the line again (why export-journal
    # polls instead)
    assert not cursor.exists()
