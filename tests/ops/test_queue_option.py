"""`--queue NAME` on `dlq ...`, `send` and `check` with a config of several [queues.NAME] tables:
real CLI processes against moto's SQS server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import queue_total, receive_all, send_bodies
from tests.integration.test_daemon import run_cli
from tests.ops.test_dlq_tools import bodies_on, json_lines, run_dlq, summary_of

pytestmark = pytest.mark.servers


def queues_config(directory: Path, local: Any, queues: dict[str, tuple[str, str]], **targets: str) -> Path:
    """A config of one [queues.NAME] table a queue (handler: noop unless `targets` names one)."""
    lines = ["[workers]", "processes = 1", "concurrency = 4", "[metrics]", 'listen = ""']
    for name, (url, dlq) in queues.items():
        lines += [
            f"[queues.{name}]",
            f'url = "{url}"',
            f'dlq_url = "{dlq}"',
            f'endpoint_url = "{local.endpoint_url}"',
            'region = "us-east-1"',
            f"[queues.{name}.handler]",
            f'target = "{targets.get(name, "tests.sample_handlers:noop")}"',
        ]
    path = directory / "queues.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def two_queues(local_sqs, sqs, make_queues, tmp_path):
    """orders and audit-log, each with a DLQ holding its own messages."""
    orders, audit = make_queues(), make_queues()
    send_bodies(sqs, orders[1], ["order-1", "order-2", "order-3"])
    send_bodies(sqs, audit[1], ["audit-1", "audit-2"])
    config = queues_config(tmp_path, local_sqs, {"orders": orders, "audit-log": audit})
    return {"config": str(config), "orders": orders, "audit-log": audit}


@pytest.mark.parametrize("command", ["stats", "peek", "export", "replay", "purge"])
def test_dlq_commands_need_a_known_queue_among_several(local_sqs, sqs, two_queues, tmp_path, command):
    extra = {"export": ["--out", str(tmp_path / "x.jsonl")], "replay": ["--yes"], "purge": ["--yes"]}
    args = ["--config", two_queues["config"], *extra.get(command, [])]
    # WHEN no --queue is given THEN exit 2, listing the queues there are
    result = run_dlq(local_sqs, command, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "give --queue NAME, one of: orders, audit-log" in result.stderr
    # WHEN an unknown one is given THEN exit 2, listing them too
    result = run_dlq(local_sqs, command, *args, "--queue", "billing")
    assert result.returncode == 2
    assert "no queue named 'billing' in the config; its queues: orders, audit-log" in result.stderr
    # AND nothing was touched
    assert (
        queue_total(sqs, two_queues["orders"][1]) == 3 and queue_total(sqs, two_queues["audit-log"][1]) == 2
    )
    assert not (tmp_path / "x.jsonl").exists()


def test_stats_and_peek_read_the_named_queues_dlq(local_sqs, two_queues):
    # WHEN stats and peek name audit-log
    result = run_dlq(local_sqs, "stats", "--config", two_queues["config"], "--queue", "audit-log")
    assert result.returncode == 0, result.stderr
    [row] = json_lines(result.stdout)
    # THEN they show its DLQ, not the first queue's
    assert (row["queue"], row["visible"]) == (two_queues["audit-log"][1], 2)
    result = run_dlq(local_sqs, "peek", "--config", two_queues["config"], "--queue", "audit-log", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(r["body"] for r in json_lines(result.stdout)) == ["audit-1", "audit-2"]


def test_replay_export_and_purge_act_on_the_named_queue_only(local_sqs, sqs, two_queues, tmp_path):
    orders, audit = two_queues["orders"], two_queues["audit-log"]
    config = ("--config", two_queues["config"])
    # WHEN orders' DLQ is replayed (no poller.failure: the destination is the queue's own url)
    result = run_dlq(local_sqs, "replay", *config, "--queue", "orders", "--yes")
    assert summary_of(result)["replayed"] == 3, result.stderr
    # THEN its messages are back on orders, and audit-log's DLQ is untouched
    assert sorted(bodies_on(sqs, orders[0])) == ["order-1", "order-2", "order-3"]
    assert queue_total(sqs, orders[1]) == 0 and queue_total(sqs, audit[1]) == 2

    # WHEN audit-log's DLQ is exported THEN the file has its messages
    out = tmp_path / "audit.jsonl"
    result = run_dlq(local_sqs, "export", *config, "--queue", "audit-log", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["body"] for line in out.read_text().splitlines()) == ["audit-1", "audit-2"]

    # WHEN audit-log's DLQ is purged THEN it is empty, and orders' queue still has its messages
    result = run_dlq(local_sqs, "purge", *config, "--queue", "audit-log", "--yes")
    assert result.returncode == 0, result.stderr
    assert queue_total(sqs, audit[1]) == 0 and queue_total(sqs, orders[0]) == 3


def test_a_url_given_picks_its_queue_without_queue(local_sqs, two_queues):
    # GIVEN --dlq-url naming audit-log's DLQ WHEN stats runs with no --queue THEN that is the one
    dlq = two_queues["audit-log"][1]
    result = run_dlq(local_sqs, "stats", "--config", two_queues["config"], "--dlq-url", dlq)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["visible"] == 2


def test_send_goes_to_the_named_queue(local_sqs, sqs, two_queues, tmp_path):
    config = ("send", "--config", two_queues["config"])
    # WHEN no --queue is given THEN exit 2 listing the queues, and nothing is sent
    result = run_cli(*config, "hello")
    assert result.returncode == 2 and "one of: orders, audit-log" in result.stderr
    result = run_cli(*config, "--queue", "nope", "hello")
    assert result.returncode == 2 and "no queue named 'nope'" in result.stderr
    # WHEN --queue audit-log THEN the message is on audit-log's queue only
    result = run_cli(*config, "--queue", "audit-log", "--count", "2", "hello")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "event": "sent",
        "queue_url": two_queues["audit-log"][0],
        "sent": 2,
        "failed": 0,
    }
    assert [m["Body"] for m in receive_all(sqs, two_queues["audit-log"][0])] == ["hello", "hello"]
    assert queue_total(sqs, two_queues["orders"][0]) == 0


def check_rows(result: Any) -> dict[tuple[str, str], str]:
    return {(r["check"], r["queue"]): r["result"] for r in json_lines(result.stdout)}


def test_check_checks_every_queue_and_queue_narrows_it(local_sqs, two_queues):
    # WHEN check runs on a config of two queues THEN every check of both is reported, exit 0
    result = run_cli("check", "--config", two_queues["config"])
    assert result.returncode == 0, result.stdout + result.stderr
    checks = ("handler", "queue", "dlq", "redrive")
    assert check_rows(result) == {
        ("config", ""): "ok",
        **{(check, name): "ok" for name in ("orders", "audit-log") for check in checks},
    }
    # WHEN --queue names one THEN only that one is checked
    result = run_cli("check", "--config", two_queues["config"], "--queue", "audit-log")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(check_rows(result)) == {("config", "")} | {(check, "audit-log") for check in checks}
    # WHEN --queue names none of them THEN exit 2 listing them
    result = run_cli("check", "--config", two_queues["config"], "--queue", "billing")
    assert result.returncode == 2 and "its queues: orders, audit-log" in result.stderr


def test_check_names_the_queue_whose_handler_cannot_load(local_sqs, make_queues, tmp_path):
    # GIVEN two queues, audit-log's handler missing
    queues = {"orders": make_queues(), "audit-log": make_queues()}
    config = queues_config(tmp_path, local_sqs, queues, **{"audit-log": "tests.no_such_module:handle"})
    # WHEN checked THEN exit 3, the failed row names audit-log, and orders' handler is fine
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 3, result.stdout + result.stderr
    rows = {(r["check"], r["queue"]): r for r in json_lines(result.stdout)}
    assert rows[("handler", "audit-log")]["result"] == "FAILED"
    assert rows[("handler", "audit-log")]["detail"].startswith("queue audit-log: ")
    assert rows[("handler", "orders")]["result"] == "ok"
    # AND narrowed to orders, the check passes
    assert run_cli("check", "--config", str(config), "--queue", "orders").returncode == 0


def test_check_refuses_both_forms_in_one_file(local_sqs, make_queues, tmp_path):
    url, dlq = make_queues()
    config = queues_config(tmp_path, local_sqs, {"orders": (url, dlq)})
    config.write_text(config.read_text() + f'[queue]\nurl = "{url}"\ndlq_url = "{dlq}"\n')
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2
    assert "both forms of queue config: [queues.NAME] tables and [queue]" in result.stderr
