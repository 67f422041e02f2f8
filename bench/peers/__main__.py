"""`make bench-peers`: a bare boto3 loop, sqs-poller (1 and 2 processes), Celery (SQS broker),
dramatiq (dramatiq-sqs), sqs-workers and PyQS on the same workload against moto's SQS server.

Sizes from the environment (defaults in brackets; BENCH_PEERS_QUICK=1 for a smoke test):
BENCH_PEERS_MESSAGES [1000; quick 100] per run after BENCH_PEERS_WARMUP [100; quick 20],
BENCH_PEERS_RATE [50 msg/s], BENCH_PEERS_ROUNDS [3; quick 1] interleaved rounds (median),
BENCH_PEERS_ONLY (comma-separated consumer names), BENCH_PEERS_VENVS [.venv-peers] for the
peers' virtualenvs, BENCH_PEERS_OUT [bench/results] for
peers.json, peers.md and peers.png. Peer virtualenvs come from bench/peers/install.sh.
`python -m bench.peers --render bench/results/peers.json` redraws the table and chart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import REPO, compile_tree
from bench.peers import report
from bench.peers.consumers import PEERS, VENVS, Peer
from bench.peers.runner import median_of, run_once
from bench.peers.server import CountingMoto

HERE = Path(__file__).resolve().parent
BARE = "bare boto3 loop"


def settings() -> dict[str, Any]:
    quick = os.environ.get("BENCH_PEERS_QUICK", "") not in ("", "0")

    def number(name: str, default: float, small: float) -> float:
        return float(os.environ.get(name, small if quick else default))

    only = [n.strip() for n in os.environ.get("BENCH_PEERS_ONLY", "").split(",") if n.strip()]
    return {
        "quick": quick,
        "messages": int(number("BENCH_PEERS_MESSAGES", 1000, 100)),
        "warmup": int(number("BENCH_PEERS_WARMUP", 100, 20)),
        "rate": number("BENCH_PEERS_RATE", 50, 50),
        "rounds": int(number("BENCH_PEERS_ROUNDS", 3, 1)),
        "only": only,
        "out": Path(os.environ.get("BENCH_PEERS_OUT", HERE.parent / "results")),
    }


def versions(peer: Peer) -> dict[str, str]:
    """The pinned packages the peer ran with (its virtualenv's freeze)."""
    if peer.venv is None:
        return {}
    freeze = VENVS / peer.venv / ".installed"
    if not freeze.exists():
        return {}
    wanted = (
        "celery",
        "kombu",
        "pycurl",
        "dramatiq",
        "dramatiq-sqs",
        "sqs-workers",
        "pyqs",
        "boto3",
        "botocore",
    )
    out = {}
    for line in freeze.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.lower() in wanted:
            out[name] = version
    return out


def measure(s: dict[str, Any]) -> dict[str, Any]:
    peers = [p for p in PEERS if not s["only"] or p.name in s["only"]]
    if s["only"] and len(peers) != len(s["only"]):
        raise SystemExit(f"BENCH_PEERS_ONLY names unknown consumers: {s['only']}")
    results: dict[str, Any] = {}
    for peer in peers:
        results[peer.name] = {
            "needs": peer.needs,
            "settings": peer.settings,
            "versions": versions(peer),
            "runs": [],
        }
        reason = peer.unavailable()
        if reason:
            results[peer.name]["status"] = reason
            print(f"bench-peers: {peer.name}: {reason}", file=sys.stderr)
    runnable = [p for p in peers if "status" not in results[p.name]]
    with tempfile.TemporaryDirectory(prefix="sqs-poller-peers-") as tmp, CountingMoto() as moto:
        for n in range(s["rounds"]):  # interleaved: drift on the machine hits every consumer alike
            for peer in runnable:
                entry = results[peer.name]
                try:
                    run = run_once(moto, peer, Path(tmp), s["messages"], s["rate"], s["warmup"])
                except (RuntimeError, OSError) as exc:
                    entry.setdefault("errors", []).append(f"round {n + 1}: {exc}")
                    print(f"bench-peers: round {n + 1} {peer.name}: FAILED {exc}", file=sys.stderr)
                    continue
                entry["runs"].append(run)
                print(
                    f"bench-peers: round {n + 1}/{s['rounds']} {peer.name}: {json.dumps(run)}",
                    file=sys.stderr,
                )
    for entry in results.values():
        if entry["runs"]:
            entry["median"] = median_of(entry["runs"])
        elif "status" not in entry:
            entry["status"] = "failed to run: " + "; ".join(entry.get("errors", ["no run"]))[:600]
        if entry.get("errors"):
            entry["errors"] = "; ".join(entry["errors"])[:1200]
    bare = results.get(BARE, {}).get("median")
    if bare:
        for entry in results.values():
            if "median" in entry:
                entry["median"]["cpu_ratio"] = round(
                    entry["median"]["cpu_ms_per_message"] / bare["cpu_ms_per_message"], 3
                )
    return results


def draw(json_path: Path, png: Path) -> str | None:
    """The chart, drawn by the plotting virtualenv; returns why not, or None."""
    python = VENVS / "plot" / "bin" / "python"
    if (VENVS / "plot.failed").exists() or not python.exists():
        return "matplotlib's virtualenv (.venv-peers/plot) is not installed"
    done = subprocess.run(
        [str(python), str(HERE / "chart.py"), str(json_path), str(png)], capture_output=True, text=True
    )
    return None if done.returncode == 0 else done.stderr.strip()[-500:]


def render(json_path: Path) -> int:
    """Redraw peers.md and peers.png beside an earlier peers.json."""
    out = json.loads(json_path.read_text())
    out["chart_error"] = draw(json_path, json_path.with_suffix(".png"))
    json_path.with_suffix(".md").write_text(report.markdown(out))
    print(report.table(out))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--render"]:
        return render(Path(sys.argv[2]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: no consumer outlives the bench
    compile_tree(REPO)  # sqs-poller and the bare loop run from bytecode, as the peers' wheels do
    s = settings()
    started = time.monotonic()
    out: dict[str, Any] = {
        "when": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "commit": report.commit(),
        "quick": s["quick"],
        "settings": {k: v for k, v in s.items() if k not in ("out", "quick")},
    }
    out["peers"] = measure(s)
    out["seconds"] = round(time.monotonic() - started)
    s["out"].mkdir(parents=True, exist_ok=True)
    json_path, png = s["out"] / "peers.json", s["out"] / "peers.png"
    json_path.write_text(json.dumps(out, indent=2) + "\n")
    out["chart_error"] = draw(json_path, png)
    if out["chart_error"]:
        json_path.write_text(json.dumps(out, indent=2) + "\n")
    (s["out"] / "peers.md").write_text(report.markdown(out))
    print(report.table(out))
    print(f"\n{out['seconds']}s; results in {s['out']}/peers.json, peers.md, peers.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
