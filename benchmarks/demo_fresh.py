"""The demo model on forms written after its generator was tuned: a check that held-out gains carry over.

    python benchmarks/demo_fresh.py --export demo/export [--label NAME]

The demo's own held-out forms (``training/demo_data.py``) were read while its training forms were chosen;
these were written afterwards and never used to choose anything, the second set (``FRESH_FORMS_2``) after
the first one's errors were read. The same held-out names, 300 texts of one person and 200 of two or three
(a quarter of their parts negative, half with a noise mark) per set, as the demo's build makes its held-out
sets. Writes an entry (``--label``) of benchmarks/results/demo_fresh.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import merge_results

from triplex.model.extractor import open_export
from triplex.training.demo_data import demo_sentences
from triplex.training.evaluate import score

FRESH_FORMS = [
    ("{p}, born in {c} in 1980, teaches at {o}.", [("p", "born_in", "c"), ("p", "works_for", "o")]),
    ("{p} spent a decade at {o} as a chemist.", [("p", "works_for", "o")]),
    ("In an interview, {q} recalled founding {o} in a garage.", [("o", "founded_by", "q")]),
    ("{c}, in the north of {n}, is famous for its bridges.", [("c", "located_in", "n")]),
    ("{p}, an accountant with {o}, lives in a small flat.", [("p", "works_for", "o")]),
    ("Everyone in {c} remembers the day {p} was born there.", [("p", "born_in", "c")]),
    ("{o} was the idea of {q}, who still runs it.", [("o", "founded_by", "q")]),
    ("{p}, who grew up in {c2}, was born in {c}.", [("p", "born_in", "c")]),
]
FRESH_SEVERAL_FORMS = [
    ("While {p} was born in {c}, her sister {q} was born in {c2}.", [("p", "born_in", "c"), ("q", "born_in", "c2")]),
    ("{p} works for {o}. Her friend {q}, however, works for {o2}.",
     [("p", "works_for", "o"), ("q", "works_for", "o2")]),
    ("According to the records, {q} founded {o}, and {p} was born in {c}.",
     [("o", "founded_by", "q"), ("p", "born_in", "c")]),
    ("{p} is a pilot for {o}, and {q} flies for {o2}.", [("p", "works_for", "o"), ("q", "works_for", "o2")]),
    ("The two founders of {o}, {q} and {p}, were both born abroad.",
     [("o", "founded_by", "q"), ("o", "founded_by", "p")]),
]  # fmt: skip
FRESH_FORMS_2 = [
    ("{p} has been on the payroll of {o} since March.", [("p", "works_for", "o")]),
    ("It was in {c} that {p} was born.", [("p", "born_in", "c")]),
    ("{o} owes its start to {q}.", [("o", "founded_by", "q")]),
    ("{p}, whose birthplace is {c}, paints in her spare time.", [("p", "born_in", "c")]),
    ("{p} clocks in every day at {o}.", [("p", "works_for", "o")]),
    ("Tourists flock to {c} in {n} every summer.", [("c", "located_in", "n")]),
    ("{p} moved to {c2} as a child, though she was born in {c}.", [("p", "born_in", "c")]),
    ("{q} launched {o} and sold it ten years later.", [("o", "founded_by", "q")]),
]
FRESH_SEVERAL_FORMS_2 = [
    ("{p} was born in {c}, {q} in {c2}.", [("p", "born_in", "c"), ("q", "born_in", "c2")]),
    ("{q}, who founded {o}, hired {p} on the spot.", [("o", "founded_by", "q"), ("p", "works_for", "o")]),
    ("{p} and {q} both work for {o}.", [("p", "works_for", "o"), ("q", "works_for", "o")]),
    ("{p} lives in {c2} but was born in {c}; {q} works for {o}.", [("p", "born_in", "c"), ("q", "works_for", "o")]),
]
SETS = {"fresh": (FRESH_FORMS, FRESH_SEVERAL_FORMS), "fresh2": (FRESH_FORMS_2, FRESH_SEVERAL_FORMS_2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--label", default="current demo")
    args = parser.parse_args()
    sets = {}
    for name, (forms, several_forms) in SETS.items():
        fresh = {"held_out": True, "forms": forms, "several_forms": several_forms}
        sets[name] = demo_sentences(300, seed=3, **fresh)
        sets[f"{name}_several"] = demo_sentences(200, seed=4, several=1.0, **fresh)
    extractor = open_export(args.export, provider="cpu")
    figures = {}
    for name, examples in sets.items():
        metrics = score([e.triples for e in examples], extractor.extract([e.text for e in examples]))
        figures[name] = {key: round(metrics[key], 4) for key in ("precision", "recall", "f1")}
    print(json.dumps(figures))
    merge_results("demo_fresh", {args.label: {"export": str(args.export), **figures}})


if __name__ == "__main__":
    main()
