"""`python -m bench.fleet`: the fleet drill (docs/operations.md, "Fleet drill"). Prints a table a
period and the checks; writes bench/results/fleet.json and fleet.png; exits 1 if a check fails."""

from __future__ import annotations

import sys

from bench.fleet.drill import DELIVERY, REPO, Settings, dump, run
from bench.fleet.report import MODELS, checks, figures, first_breach, plot, summary


def main(argv: list[str] | None = None) -> int:
    s = Settings()
    print(MODELS, flush=True)
    print(
        f"\ntraffic: base {s.base_seconds:.0f} s, 10x on '{s.spike_queue}' {s.spike_seconds:.0f} s, base "
        f"{s.after_seconds:.0f} s, then quiet; target {s.policy.target:g} s, "
        f"{s.policy.min_size}..{s.policy.max_size} instances of {s.concurrency} slots; policy periods "
        f"{s.period:g} s, each read {DELIVERY:g} s after its end\n",
        flush=True,
    )
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    result = run(s, results)
    result["first_breach"] = first_breach(result, s)
    outcome = checks(result, s)
    result["checks"] = [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in outcome]
    print("\n" + summary(result))
    for name, ok, detail in outcome:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    dump(figures(result, s), results / "fleet.json")
    plot(result, s, results / "fleet.png")
    print(f"wrote {results / 'fleet.json'} and {results / 'fleet.png'} (daemon logs: {result['workdir']})")
    return 0 if all(ok for _, ok, _ in outcome) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
