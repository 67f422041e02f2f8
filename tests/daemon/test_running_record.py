"""The record of what a worker is running, as the supervisor reads it after a crash: a shorter
record written over a longer one names only its own messages."""

from __future__ import annotations

import os

from poller.daemon.crashes import RunningRecord, crashes, record_crash


def test_a_shorter_record_over_a_longer_one_names_only_its_messages(tmp_path):
    # GIVEN a worker's record that named three messages, then one
    record = RunningRecord(str(tmp_path))
    record.write(["first-message-id", "second-message-id", "third-message-id"])
    record.write(["second-message-id"])

    # WHEN its worker dies and the supervisor reads the record
    marked = record_crash(os.getpid(), "signal SIGKILL", str(tmp_path))

    # THEN only the message it named last is marked, as alone at the crash
    assert marked == ["second-message-id"]
    assert crashes("second-message-id", str(tmp_path)) == ["signal SIGKILL"]
    assert crashes("first-message-id", str(tmp_path)) == []


def test_an_empty_record_marks_nothing(tmp_path):
    # GIVEN a worker whose record named messages, then none (all settled)
    record = RunningRecord(str(tmp_path))
    record.write(["a-message-id", "another-message-id"])
    record.write([])

    # WHEN its worker dies
    marked = record_crash(os.getpid(), "signal SIGSEGV", str(tmp_path))

    # THEN no message is blamed
    assert marked == []
    assert crashes("a-message-id", str(tmp_path)) == []


def test_a_record_longer_than_its_file_grows_it_and_a_killed_writer_leaves_it_readable(tmp_path):
    # GIVEN a record whose file starts small, then names more than fits, then fewer
    record = RunningRecord(str(tmp_path), size=64)
    many = [f"message-{n:04d}-{'x' * 30}" for n in range(50)]
    record.write(many)
    record.write(many[:3])

    # WHEN its worker dies without closing it (the record is only in the shared mapping)
    marked = record_crash(os.getpid(), "signal SIGKILL", str(tmp_path))

    # THEN the supervisor reads the last record whole
    assert marked == many[:3]
