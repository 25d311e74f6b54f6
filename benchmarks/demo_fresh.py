"""The demo model on forms written after its generator was tuned: a check that held-out gains carry over.

    python benchmarks/demo_fresh.py --export demo/export [--label NAME]

The demo's own held-out forms (``training/demo_data.py``) were read while its training forms were chosen;
the forms in ``demo_fresh_forms.json`` were written afterwards and never used to choose anything, its second
set (``fresh2``) after the first one's errors were read. The same held-out names, 300 texts of one person
and 200 of two or three (a quarter of their parts negative, half with a noise mark) per set, as the demo's
build makes its held-out sets. Writes an entry (``--label``) of benchmarks/results/demo_fresh.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import merge_results

from triplex.model.extractor import open_export
from triplex.training.demo_data import demo_sentences
from triplex.training.evaluate import score

FORMS = Path(__file__).with_name("demo_fresh_forms.json")  # per set: one person's forms, several people's


def form_sets() -> dict[str, tuple[list, list]]:
    """Each set's forms as the generator takes them: (template, [(subject slot, predicate, object slot)])."""
    sets = {name: value for name, value in json.loads(FORMS.read_text()).items() if name != "note"}

    def forms(listed: list) -> list:
        return [(template, [tuple(triple) for triple in triples]) for template, triples in listed]

    return {name: (forms(value["forms"]), forms(value["several_forms"])) for name, value in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--label", default="current demo")
    args = parser.parse_args()
    sets = {}
    for name, (forms, several_forms) in form_sets().items():
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
