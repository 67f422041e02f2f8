"""`make bench-peers` in quick mode, for the two consumers that need no peer virtualenv: the
bare boto3 loop and sqs-poller, with tiny counts, and a peer whose install failed. Checks the
bench produces its table with sane figures, not the figures themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONSUMERS = ["bare boto3 loop", "sqs-poller 1 process"]


def test_quick_bench_writes_a_table_of_sane_figures(tmp_path: Path) -> None:
    # GIVEN the quick mode, two consumers, 50 messages each after a 10-message warm-up, and
    # PyQS, whose virtualenv failed to install
    venvs = tmp_path / "venvs"
    venvs.mkdir()
    (venvs / "pyqs.failed").write_text("ERROR: No matching distribution found for pyqs==1.0.1\n")
    env = {
        **os.environ,
        "BENCH_PEERS_QUICK": "1",
        "BENCH_PEERS_ONLY": ",".join([*CONSUMERS, "PyQS"]),
        "BENCH_PEERS_VENVS": str(venvs),
        "BENCH_PEERS_MESSAGES": "50",
        "BENCH_PEERS_WARMUP": "10",
        "BENCH_PEERS_OUT": str(tmp_path),
    }

    # WHEN the bench runs
    done = subprocess.run(
        [sys.executable, "-m", "bench.peers"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )

    # THEN it succeeds and every consumer measured every message
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "peers.json").read_text())
    assert list(results["peers"]) == [*CONSUMERS, "PyQS"]
    for name in CONSUMERS:
        peer = results["peers"][name]
        assert "median" in peer, f"{name}: {peer.get('status')}"
        run = peer["runs"][0]
        assert run["handled"] == 50
        assert run["handled_twice"] == 0
        # AND the server counted at least a receive and a delete per batch of ten, and no
        # more than one of each per message
        assert 0.2 <= run["requests_per_message"] <= 2, run["requests_by_action"]
        assert run["requests_by_action"]["ReceiveMessage"] >= 5
        assert 0 <= run["cpu_ms_per_message"] < 50
        assert 10 < run["peak_rss_mb"] < 1000
        assert 0 < run["latency_p50_ms"] <= run["latency_p95_ms"] < 5000
    assert results["peers"]["bare boto3 loop"]["median"]["cpu_ratio"] == 1.0

    # AND the Markdown table has a row per consumer, with the machine, and says whether the
    # chart was drawn
    table = (tmp_path / "peers.md").read_text()
    for name in CONSUMERS:
        assert f"| {name} |" in table
    # AND the peer that could not be installed has its row, with pip's reason
    assert "| PyQS | did not install: ERROR: No matching distribution found for pyqs==1.0.1 |" in table
    assert f"{os.cpu_count()} cores" in table
    assert (tmp_path / "peers.png").exists() or "Chart not drawn:" in table
