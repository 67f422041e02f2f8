"""bench/cost.py's many-queues table: docs/operations.md carries exactly what it prints, in the
one cost section, and the model compares what it says it compares."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench import cost

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
BEGIN, END = "<!-- bench.cost --fleet: begin -->\n", "<!-- bench.cost --fleet: end -->"


def results() -> dict:
    return json.loads(cost.RESULTS.read_text())


def test_the_operations_guide_carries_the_generated_table_in_its_one_cost_section():
    # GIVEN the operations guide
    text = OPERATIONS.read_text()
    # THEN it has one cost section, and the table in it is what `python -m bench.cost --fleet`
    # prints from the committed results (regenerate it there, never by hand)
    assert len(re.findall(r"^## .*[Cc]ost", text, re.M)) == 1
    section = text[text.index("## Cost: instances or Lambda") :]
    table = section[section.index(BEGIN) + len(BEGIN) : section.index(END)]
    assert table == cost.fleet_markdown(results())


def test_the_command_prints_the_fleet_table(capsys):
    assert cost.main(["--fleet"]) == 0
    assert capsys.readouterr().out == cost.fleet_markdown(results())


def test_one_fleet_for_many_queues_costs_less_than_a_fleet_each():
    # GIVEN every case of the table
    rows = {(r["queues"], r["rate"]): r for r in cost.fleet_rows(results())}
    for (queues, _), row in rows.items():
        if queues == 1:
            # THEN one queue: one fleet is the same thing either way
            assert row["shared_usd"] == row["each_usd"]
        else:
            # AND several: the shared fleet is cheaper, and each fleet is at least one instance
            assert row["shared_usd"] < row["each_usd"]
            assert row["each"][1] >= 1
        # AND Lambda grows with the traffic and the queues, never with a fleet's size
        assert row["lambda_usd"] > 0
    assert rows[(12, 1)]["each_usd"] > 10 * rows[(1, 1)]["each_usd"]
    assert rows[(12, 1)]["lambda_usd"] < rows[(12, 1)]["each_usd"]
    assert rows[(12, 10)]["shared_usd"] < rows[(12, 10)]["lambda_usd"]


def test_a_fleet_grows_with_the_cpu_it_needs():
    prices = cost.PRICES
    assert cost.fleet_size(1, 20.43, prices)[:2] == ("t3.small", 1)  # 0.02 vCPU: the small one
    name, count, _ = cost.fleet_size(1000, 20.43, prices)  # 20.4 vCPU at 70 % of 2 a c7g.large
    assert (name, count) == ("c7g.large", 15)
