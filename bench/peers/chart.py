"""`python chart.py RESULTS.json OUT.png`: CPU per message and peak RSS per consumer, side by
side. Runs in the bench-only plotting virtualenv (.venv-peers/plot, matplotlib)."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, out: str) -> int:
    results = json.loads(open(source).read())
    names, cpu, rss, pss = [], [], [], []
    for name, peer in results["peers"].items():
        if "median" in peer:
            names.append(name)
            cpu.append(peer["median"]["cpu_ms_per_message"])
            rss.append(peer["median"]["peak_rss_mb"])
            pss.append(peer["median"]["peak_pss_mb"])
        else:
            names.append(f"{name} (not run)")
            cpu.append(0)
            rss.append(0)
            pss.append(0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.55 * len(names) + 1.8), sharey=True)
    rows = list(range(len(names)))[::-1]
    left.barh(rows, cpu, color="#4c72b0")
    left.set_yticks(rows, names)
    left.set_xlabel("CPU ms per message (process tree)")
    left.set_xlim(0, max(cpu + [0.1]) * 1.15)
    for y, v in zip(rows, cpu, strict=True):
        if v:
            left.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    right.barh([r + 0.2 for r in rows], rss, height=0.4, color="#dd8452", label="peak RSS (tree)")
    right.barh([r - 0.2 for r in rows], pss, height=0.4, color="#55a868", label="peak PSS (tree)")
    right.set_xlabel("MB")
    right.set_xlim(0, max(rss + [1]) * 1.12)
    right.legend(loc="lower right", fontsize=8)
    for y, v in zip(rows, rss, strict=True):
        if v:
            right.text(v, y + 0.2, f" {v:.0f}", va="center", fontsize=8)
    s, mach = results["settings"], results["machine"]
    fig.suptitle(
        f"SQS consumers, {s['rate']:.0f} msg/s in batches of ten, no-op handler "
        f"({results['when'][:10]}, {mach['cpu_model']}, {mach['cores']} cores)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
