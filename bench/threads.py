"""`python -m bench.threads [CHECKOUT [MESSAGES RATE]]`: CPU per message of each thread of one
worker (the daemon of CHECKOUT, default this tree, with `processes = 1`), paced at RATE msg/s
(100) for MESSAGES (2000), next to the bare loop's one thread. Per-thread user+sys comes from
/proc/PID/task/TID/schedstat (nanoseconds on a CPU, so short bursts count too), read after a
warm-up and once the queue is empty, with each thread's context switches (/proc/.../status);
thread names from `py-spy dump` when py-spy is installed (else thread ids)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench.harness as harness
from bench.harness import (
    BareLoop,
    Daemon,
    client,
    new_queues,
    preload,
    send_paced,
    wait_drained,
    write_config,
)
from bench.server import MotoProcess


def thread_cpu(pid: int) -> dict[int, tuple[float, int]]:
    """Each thread's (CPU seconds, context switches so far)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        switches = sum(int(n) for n in re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M))
        out[int(tid)] = (ns / 1e9, switches)
    return out


def thread_names(pid: int) -> dict[int, str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(spy):
        return {}
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True).stdout
    return {int(tid): name for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]+)"', dump, re.M)}


def measure(
    kind: str, moto: MotoProcess, workdir: Path, messages: int, rate: float
) -> dict[str, tuple[float, float]]:
    """Per thread name: (CPU ms a message, context switches a message)."""
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    if kind == "bare":
        consumer = BareLoop(moto.endpoint_url, url, workdir).start()
    else:
        config = write_config(
            workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop", workers={"processes": 1}
        )
        consumer = Daemon(config, workdir).start()
    try:
        consumer.wait_ready()
        send_paced(sqs, url, min(500, messages // 4), rate)
        wait_drained(sqs, url)
        time.sleep(0.5)
        pid = consumer.pid if kind == "bare" else consumer.workers()[0]
        before = thread_cpu(pid)
        send_paced(sqs, url, messages, rate)
        wait_drained(sqs, url, interval=0.05)
        after = thread_cpu(pid)
        names = thread_names(pid)
    finally:
        consumer.stop(wake=lambda: preload(sqs, url, 40))
    per_thread: dict[str, tuple[float, float]] = {}
    for tid, (seconds, switches) in after.items():
        name = "main" if tid == pid else re.sub(r"[-_]\d+$", "", names.get(tid, str(tid)))
        was_seconds, was_switches = before.get(tid, (0.0, 0))
        ms, cs = per_thread.get(name, (0.0, 0.0))
        per_thread[name] = (
            ms + (seconds - was_seconds) * 1000 / messages,
            cs + (switches - was_switches) / messages,
        )
    return per_thread


def main(argv: list[str]) -> int:
    checkout = Path(argv[0]).resolve() if argv else harness.REPO
    messages, rate = (int(argv[1]), float(argv[2])) if len(argv) > 2 else (2000, 100.0)
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        harness.REPO = checkout
        for kind in ("bare", "sqs-poller"):
            figures = measure(kind, moto, Path(tmp), messages, rate)
            total = sum(ms for ms, _ in figures.values())
            switches = sum(cs for _, cs in figures.values())
            where = checkout if kind != "bare" else "bench/bare_loop.py"
            print(f"{kind} ({where}): {total:.3f} ms, {switches:.2f} context switches a message")
            for name, (ms, cs) in sorted(figures.items(), key=lambda kv: -kv[1][0]):
                print(f"  {name:<20} {ms:.4f} ms {cs:6.2f} switches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
