"""What the measured CPU per message means in money: per consumer, what one instance handles per
second at 70 % CPU, its cost per million messages fully used, and Lambda's for the same handler;
and for many queues, one fleet for all of them against one fleet each and against Lambda.

`python -m bench.cost [RESULTS.json]` (default bench/results/peers.json) prints Markdown tables;
`--fleet` prints only the many-queues table, the one docs/operations.md carries (between its
`bench.cost --fleet` markers; a test checks it is this output). Every price is an input below,
with the date it was taken and where from; change them there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"

# List prices as published on the sources below; written down on this date from those pages'
# figures, not fetched (the bench machine reaches no web page). Re-check before relying on them.
PRICES: dict[str, Any] = {
    "date": "2026-11-27",
    "region": "us-east-1, On-Demand, Linux",
    "sources": [
        "https://aws.amazon.com/ec2/pricing/on-demand/",
        "https://aws.amazon.com/lambda/pricing/",
        "https://aws.amazon.com/sqs/pricing/",
        "https://aws.amazon.com/ebs/pricing/",
    ],
    # usd per hour, vCPUs, and this machine's CPU ms per message -> that instance's (1.0: same speed)
    "instances": {
        "c7g.large": {"usd_per_hour": 0.0725, "vcpus": 2, "cpu_scale": 1.0},
        "m7i.large": {"usd_per_hour": 0.1008, "vcpus": 2, "cpu_scale": 1.0},
    },
    # The smallest fleet: a burstable instance, sized on its sustained baseline (20 % of each of
    # its 2 vCPUs), not on credits it cannot keep earning. This and gp3 are the figures the
    # operations guide's cost table used before (same region, not re-read on the date above).
    "small_instance": {"name": "t3.small", "usd_per_hour": 0.0208, "sustained_vcpus": 0.4},
    "gp3_usd_per_gb_month": 0.08,
    "lambda_usd_per_million_requests": 0.20,
    "lambda_usd_per_gb_second": 0.0000166667,  # x86; Arm is 0.0000133334
    "lambda_memory_gb": 0.125,  # 128 MB
    "sqs_usd_per_million_requests": 0.40,  # standard queue, past the free tier
}
HOURS_PER_MONTH = 730
CPU_TARGET = 0.70
HANDLERS = {  # name -> (handler duration in s, CPU it spends itself in ms): I/O waits cost no CPU
    "no-op handler": (0.0, 0.0),
    "100 ms I/O handler": (0.1, 0.0),
}
LAMBDA_NOOP_BILLED_S = 0.002  # a no-op Python handler's billed duration per invocation (assumed)
LAMBDA_BATCHES = (1, 10)
LAMBDA_SQS_REQUESTS_PER_MESSAGE = 0.2  # the floor: one receive and one delete per ten messages
# Messages each consumer handles at once as `make bench-peers` runs it (threads, children or
# slots); a slower handler is bounded by slots / duration until more are configured.
SLOTS_AS_RUN = {
    "bare boto3 loop": 1,
    "sqs-poller 1 process": 10,
    "sqs-poller 2 processes": 20,
    "Celery (SQS broker)": 1,
    "dramatiq (dramatiq-sqs)": 8,
    "sqs-workers": 1,
    "PyQS": 1,
}


def lambda_per_million(duration_s: float, batch: int, p: dict[str, Any]) -> float:
    """Lambda's requests + GB-seconds per million messages, `batch` messages per invocation
    handled one after another, plus the SQS requests its pollers make at their floor."""
    invocations = 1e6 / batch
    billed_s = max(duration_s * batch, LAMBDA_NOOP_BILLED_S)
    requests = invocations * p["lambda_usd_per_million_requests"] / 1e6
    compute = invocations * billed_s * p["lambda_memory_gb"] * p["lambda_usd_per_gb_second"]
    sqs = LAMBDA_SQS_REQUESTS_PER_MESSAGE * p["sqs_usd_per_million_requests"]
    return requests + compute + sqs


def rows(results: dict[str, Any], handler: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    duration, handler_cpu_ms = HANDLERS[handler]
    lambdas = {batch: lambda_per_million(duration, batch, p) for batch in LAMBDA_BATCHES}
    out = []
    for name, peer in results["peers"].items():
        if "median" not in peer:
            continue
        m = peer["median"]
        for instance, spec in p["instances"].items():
            cpu_ms = m["cpu_ms_per_message"] * spec["cpu_scale"] + handler_cpu_ms
            per_second = CPU_TARGET * spec["vcpus"] * 1000 / cpu_ms
            instance_per_million = spec["usd_per_hour"] / (per_second * 3600) * 1e6
            sqs_per_million = m["requests_per_message"] * p["sqs_usd_per_million_requests"]
            monthly = spec["usd_per_hour"] * HOURS_PER_MONTH
            out.append(
                {
                    "consumer": name,
                    "instance": instance,
                    "messages_per_second": per_second,
                    "slots_in_flight": per_second * duration,
                    "slots_as_run": SLOTS_AS_RUN.get(name),
                    "instance_usd_per_million": instance_per_million,
                    "sqs_usd_per_million": sqs_per_million,
                    "total_usd_per_million": instance_per_million + sqs_per_million,
                    "instance_usd_per_month": monthly,
                    "capacity_millions_per_month": per_second * HOURS_PER_MONTH * 3600 / 1e6,
                    "lambda_usd_per_million": lambdas,
                    # the monthly volume above which one always-on instance costs less than Lambda
                    "break_even_millions_per_month": {
                        b: monthly / (cost - sqs_per_million) if cost > sqs_per_million else float("inf")
                        for b, cost in lambdas.items()
                    },
                }
            )
    return out


def table(results: dict[str, Any], handler: str, p: dict[str, Any] = PRICES) -> str:
    batches = " / ".join(str(b) for b in LAMBDA_BATCHES)
    lines = [
        f"| Consumer | instance | msg/s at {CPU_TARGET:.0%} CPU | in flight (slots as run) | "
        f"$ / million, instance fully used + SQS requests | Lambda $ / million, batch {batches} | "
        f"instance cheaper above, M msg/month (batch {batches}) | one instance's capacity, M msg/month |",
        "|" + "---|" * 8,
    ]
    for r in rows(results, handler, p):
        lam = " / ".join(f"{v:.3f}" for v in r["lambda_usd_per_million"].values())
        even = " / ".join(
            _volume(v, r["capacity_millions_per_month"]) for v in r["break_even_millions_per_month"].values()
        )
        slots = f" ({r['slots_as_run']})" if r["slots_as_run"] and r["slots_in_flight"] else ""
        lines.append(
            f"| {r['consumer']} | {r['instance']} | {r['messages_per_second']:,.0f} | "
            f"{r['slots_in_flight']:,.0f}{slots} | {r['instance_usd_per_million']:.4f} + "
            f"{r['sqs_usd_per_million']:.3f} = {r['total_usd_per_million']:.3f} | {lam} | {even} | "
            f"{r['capacity_millions_per_month']:,.0f} |"
        )
    return "\n".join(lines)


def _volume(millions: float, capacity: float) -> str:
    """A break-even volume; 'never' when the consumer's own SQS requests cost more than Lambda,
    and marked when one instance cannot handle that much."""
    if millions == float("inf"):
        return "never"
    return f"{millions:,.0f}" + (" (> 1 instance)" if millions > capacity else "")


def markdown(results: dict[str, Any], p: dict[str, Any] = PRICES) -> str:
    instances = ", ".join(
        f"{name} ${spec['usd_per_hour']}/h ({spec['vcpus']} vCPU)" for name, spec in p["instances"].items()
    )
    parts = [
        f"Prices ({p['region']}, taken {p['date']}): {instances}; Lambda "
        f"${p['lambda_usd_per_million_requests']:.2f} per million requests and "
        f"${p['lambda_usd_per_gb_second']:.10f} per GB-s at {p['lambda_memory_gb'] * 1024:.0f} MB; SQS "
        f"${p['sqs_usd_per_million_requests']:.2f} per million requests. CPU per message from "
        f"{results['when']} ({results['machine']['cpu_model']}).",
    ]
    for handler in HANDLERS:
        parts += ["", f"**{handler}**", "", table(results, handler, p)]
    return "\n".join(parts) + "\n"


# --- many queues: one fleet for all of them, one fleet each, or Lambda ---------------------------

FLEET_CONSUMER = "sqs-poller 2 processes"  # the daemon's CPU a message, as deployed (a process a vCPU)
FLEET_INSTANCE = "c7g.large"  # what a fleet grows on once one small instance is not enough
FLEET_HANDLER_CPU_MS = 20.0  # the handler's own CPU a message: a realistic one, not a no-op
FLEET_ROOT_GB = 16  # the Terraform module's root_volume_size default
FLEET_PROCESSES = 2  # worker processes an instance (one per vCPU)
LONG_POLL_SECONDS = 20  # an idle queue costs each process one receive per long poll
SPOT_FRACTION = 0.4  # Spot's price as a share of on-demand (assumed; it varies by type and zone)
LAMBDA_FLEET_MEMORY_GB = 1769 / 1024  # one full vCPU, so the 20 ms of CPU take 20 ms
LAMBDA_FLEET_BATCH = 10
LAMBDA_IDLE_POLLERS = 5  # Lambda's event source long-polls each queue with at least five pollers
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
FLEET_CASES = [(1, 1), (1, 10), (1, 100), (4, 1), (4, 10), (4, 100), (12, 1), (12, 10), (12, 100)]


def fleet_size(rate: float, cpu_ms: float, p: dict[str, Any]) -> tuple[str, int, float]:
    """(instance type, count, usd per month) of one always-on fleet for `rate` messages/s."""
    small = p["small_instance"]
    volume = FLEET_ROOT_GB * p["gp3_usd_per_gb_month"]
    if rate * cpu_ms / 1000 <= small["sustained_vcpus"]:
        return small["name"], 1, small["usd_per_hour"] * HOURS_PER_MONTH + volume
    spec = p["instances"][FLEET_INSTANCE]
    count = max(1, -int(-rate * cpu_ms / 1000 // (CPU_TARGET * spec["vcpus"])))
    return FLEET_INSTANCE, count, count * (spec["usd_per_hour"] * HOURS_PER_MONTH + volume)


def idle_poll_usd(queues: int, pollers: int, p: dict[str, Any]) -> float:
    """A month of empty long polls: each poller asks each queue once per long poll."""
    receives = queues * pollers * SECONDS_PER_MONTH / LONG_POLL_SECONDS
    return receives * p["sqs_usd_per_million_requests"] / 1e6


def fleet_rows(results: dict[str, Any], p: dict[str, Any] = PRICES) -> list[dict[str, Any]]:
    daemon = results["peers"][FLEET_CONSUMER]["median"]
    cpu_ms = daemon["cpu_ms_per_message"] * p["instances"][FLEET_INSTANCE]["cpu_scale"] + FLEET_HANDLER_CPU_MS
    requests_usd = daemon["requests_per_message"] * p["sqs_usd_per_million_requests"] / 1e6
    lambda_usd = lambda_fleet_per_message(p)
    out = []
    for queues, rate in FLEET_CASES:
        messages = queues * rate * SECONDS_PER_MONTH
        shared_type, shared_count, shared_usd = fleet_size(queues * rate, cpu_ms, p)
        # Spot above one on-demand instance, where the fleet has more than one.
        spot_usd = shared_usd - (shared_count - 1) * (1 - SPOT_FRACTION) * shared_usd / shared_count
        each_type, each_count, each_usd = fleet_size(rate, cpu_ms, p)
        out.append(
            {
                "queues": queues,
                "rate": rate,
                "messages_per_month": messages,
                "shared": (shared_type, shared_count),
                "shared_usd": shared_usd
                + messages * requests_usd
                + idle_poll_usd(queues, shared_count * FLEET_PROCESSES, p),
                "shared_spot_usd": spot_usd
                + messages * requests_usd
                + idle_poll_usd(queues, shared_count * FLEET_PROCESSES, p),
                "each": (each_type, each_count),
                "each_usd": queues
                * (
                    each_usd
                    + messages / queues * requests_usd
                    + idle_poll_usd(1, each_count * FLEET_PROCESSES, p)
                ),
                "lambda_usd": messages * lambda_usd + idle_poll_usd(queues, LAMBDA_IDLE_POLLERS, p),
            }
        )
    return out


def lambda_fleet_per_message(p: dict[str, Any]) -> float:
    """Lambda, one vCPU of memory, batches of ten: invocations, GB-seconds, its pollers' requests."""
    invocations = p["lambda_usd_per_million_requests"] / 1e6 / LAMBDA_FLEET_BATCH
    compute = FLEET_HANDLER_CPU_MS / 1000 * LAMBDA_FLEET_MEMORY_GB * p["lambda_usd_per_gb_second"]
    return invocations + compute + LAMBDA_SQS_REQUESTS_PER_MESSAGE * p["sqs_usd_per_million_requests"] / 1e6


def fleet_markdown(results: dict[str, Any], p: dict[str, Any] = PRICES) -> str:
    daemon_ms = results["peers"][FLEET_CONSUMER]["median"]["cpu_ms_per_message"]
    lines = [
        f"Prices ({p['region']}, taken {p['date']}; sources at the top of `bench/cost.py`): "
        f"{FLEET_INSTANCE} ${p['instances'][FLEET_INSTANCE]['usd_per_hour']}/h, "
        f"{p['small_instance']['name']} ${p['small_instance']['usd_per_hour']}/h, gp3 "
        f"${p['gp3_usd_per_gb_month']}/GB-month ({FLEET_ROOT_GB} GB a root volume), SQS "
        f"${p['sqs_usd_per_million_requests']:.2f} per million requests, Lambda "
        f"${p['lambda_usd_per_million_requests']:.2f} per million invocations and "
        f"${p['lambda_usd_per_gb_second']:.10f} per GB-s; Spot assumed at {SPOT_FRACTION:.0%} of "
        f"on-demand. A handler spending {FLEET_HANDLER_CPU_MS:g} ms of CPU a message, plus the "
        f"daemon's {daemon_ms} ms ({FLEET_CONSUMER}, `make bench-peers` of {results['when'][:10]}).",
        "",
        "| queues | msg/s each | messages/month, all queues | one fleet for all | one fleet, "
        "Spot above one on-demand | one fleet each | Lambda, batches of 10 |",
        "| ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for r in fleet_rows(results, p):
        shared_type, shared_count = r["shared"]
        each_type, each_count = r["each"]
        lines.append(
            f"| {r['queues']} | {r['rate']:g} | {_millions(r['messages_per_month'])} | "
            f"{shared_count} × {shared_type}: ${r['shared_usd']:,.0f} | ${r['shared_spot_usd']:,.0f} | "
            f"{r['queues']} × {each_count} × {each_type}: ${r['each_usd']:,.0f} | ${r['lambda_usd']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def _millions(messages: float) -> str:
    return f"{messages / 1e9:,.1f} G" if messages >= 1e9 else f"{messages / 1e6:,.1f} M"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(RESULTS))
    parser.add_argument(
        "--fleet", action="store_true", help="only the many-queues table (docs/operations.md)"
    )
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    if args.fleet:
        print(fleet_markdown(results), end="")
    else:
        print(markdown(results))
        print("**Many queues: one fleet for all, one fleet each, or Lambda**\n")
        print(fleet_markdown(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
