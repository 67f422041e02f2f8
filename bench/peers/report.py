"""The results as a Markdown table (bench/results/peers.md), with the date, machine and commit;
every peer has a row, one that could not be installed or run says why."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.peers.consumers import REPO


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def commit() -> str:
    """The commit measured, with `+changes` when poller/ or bench/ (results aside) differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "poller", "bench", ":!bench/results"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def table(results: dict[str, Any]) -> str:
    header = (
        "| Consumer | CPU ms / message | x bare loop | SQS requests / message | "
        "latency p50 / p95, ms | peak RSS, MB (tree) | peak PSS, MB | processes |"
    )
    lines = [header, "|" + "---|" * 8]
    for name, peer in results["peers"].items():
        if "median" not in peer:
            lines.append(f"| {name} | {peer['status']} | | | | | | |")
            continue
        m = peer["median"]
        ratio = f"{m['cpu_ratio']:.2f}x" if "cpu_ratio" in m else ""
        runs = f" ({len(peer['runs'])} of {results['settings']['rounds']} runs)" if peer.get("errors") else ""
        lines.append(
            f"| {name}{runs} | {m['cpu_ms_per_message']:.3f} | {ratio} | {m['requests_per_message']:.3f} | "
            f"{m['latency_p50_ms']:.0f} / {m['latency_p95_ms']:.0f} | {m['peak_rss_mb']:.0f} | "
            f"{m['peak_pss_mb']:.0f} | {m['processes']:.0f} |"
        )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    s, mach = results["settings"], results["machine"]
    parts = [
        "# Peers side by side (`make bench-peers`)",
        "",
        f"{results['when']} on {mach['cpu_model']}, {mach['cores']} cores (Python {mach['python']}, "
        f"load average {mach['load_average_at_start'][0]} at the start), sqs-poller at commit "
        f"`{results['commit']}`, {results['seconds']} s.",
        "",
        f"Workload: {s['messages']} messages per run after a {s['warmup']}-message warm-up, paced at "
        f"{s['rate']:.0f} msg/s in batches of ten, moto's SQS server in its own process; a no-op "
        f"handler that parses the JSON payload and records send-to-handle latency; "
        f"{s['rounds']} interleaved round(s), median shown"
        + (" (QUICK mode: a smoke test, not a measurement)" if results["quick"] else "")
        + ".",
        "",
        table(results),
        "",
        "CPU: user+sys of the consumer's whole process tree (reaped children included) over the "
        "measured messages. Requests: counted by the server per consumer (each has its own access "
        "key id). RSS: the peak of the tree's summed RSS, sampled every 0.25 s; PSS shares pages "
        "between forked processes fairly.",
    ]
    notes = [f"- {name}: {peer['errors']}" for name, peer in results["peers"].items() if peer.get("errors")]
    if notes:
        parts += ["", "Runs that failed:", *notes]
    if results.get("chart_error"):
        parts += ["", f"Chart not drawn: {results['chart_error']}"]
    return "\n".join(parts) + "\n"
