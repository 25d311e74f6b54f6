"""Build a starting point (for ``triplex train --init-from``) from several public datasets at once.

    python benchmarks/starts.py --sets webnlg_star nyt_star --encoder ../shared/models/minilm-l6-h384-uncased \
        --output runs/starts/en-webnlg-nyt --epochs 3

Each set's predicates are prefixed with its name (``nyt_star:/people/person/place_lived``), so the sets'
schemas stay apart in one object head (``--keep-names``: one set's own names, which a user's schema can
share, e.g. DuIE 2.0's with DuIE 1.0), and one more relation, ``*``, holds the objects of every relation of
a subject (``ANY_RELATION``). The sets' training sentences are shuffled together and their dev sentences
(a set without a dev file gives up its last ``--dev-size`` training sentences) make one dev file. The
result is an ordinary checkpoint whose model card names the combined files; the combined files and the
trailing arguments' ``triplex train`` run are written under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from common import ROOT

from triplex.model.schema import Relation, Triple, write_schema
from triplex.training.data import Example, read_dataset, read_schema, write_jsonl
from triplex.training.start import ANY_RELATION

# One more relation of every start, ANY_RELATION: the objects of every relation of a subject, whatever its
# schema (why: benchmarks/README.md, "Starting points and small data"). ``triplex train --init-from`` goes on
# training it beside a user's relations and leaves it out of the saved model.

SETS = {  # training files, dev file (None: split off the training file), schema (under ../shared/data)
    "webnlg_star": (("webnlg_star_casrel/train_triples.json",), "webnlg_star_casrel/dev_triples.json",
                    "webnlg_star_casrel/rel2id.json"),
    "nyt_star": (("nyt_star_casrel/dev_triples.json",), None, "nyt_star_casrel/rel2id.json"),
    "webnlg_exact": (("webnlg_exact/train_triples.json",), "webnlg_exact/dev_triples.json", "webnlg_exact/rel2id.json"),
    "nyt_exact": (("nyt_exact/dev_triples.json",), None, "nyt_exact/rel2id.json"),
    "conll04": (("conll04/conll04_train.json",), "conll04/conll04_dev.json", "conll04/conll04_types.json"),
    "duie1": (("duie1_lic2019/train_data.sample2601.json",), "duie1_lic2019/dev_data.head300.json",
              "duie1_lic2019/all_50_schemas"),
    "duie2": (("duie2/duie_train.head5000.json", "duie2/duie_train.sample4398.json"), "duie2/duie_dev.head1000.json",
              "duie2/duie_schema.json"),
}  # fmt: skip


def prefixed(prefix: str, examples: list[Example]) -> list[Example]:
    """The examples with every predicate named ``PREFIXpredicate``, and one ``*`` triple per subject and object
    that some predicate joins."""

    def triples(example: Example) -> list[Triple]:
        named = [Triple(t.subject, f"{prefix}{t.predicate}", t.object, t.score) for t in example.triples]
        pairs = {(t.subject.start, t.subject.end, t.object.start, t.object.end): t for t in example.triples}
        return named + [Triple(t.subject, ANY_RELATION, t.object, t.score) for t in pairs.values()]

    return [Example(e.text, triples(e)) for e in examples]


def combine(
    names: list[str], data: Path, dev_size: int, seed: int, keep_names: bool = False
) -> tuple[list, list, list[Relation]]:
    train: list[Example] = []
    dev: list[Example] = []
    relations: list[Relation] = []
    for name in names:
        train_files, dev_file, schema = SETS[name]
        prefix = "" if keep_names else f"{name}:"
        examples = prefixed(prefix, [example for file in train_files for example in read_dataset(data / file)[0]])
        if dev_file is None:
            examples, held = examples[:-dev_size], examples[-dev_size:]
        else:
            held = prefixed(prefix, read_dataset(data / dev_file)[0])[:dev_size]
        train += examples
        dev += held
        relations += [
            Relation(f"{prefix}{r.predicate}", r.subject_type, r.object_type)
            for r in read_schema(data / schema)
            if not r.slot or r.slot == "@value"
        ]
        print(f"{name}: {len(examples)} training, {len(held)} dev sentences", flush=True)
    random.Random(seed).shuffle(train)
    return train, dev, [*relations, Relation(ANY_RELATION)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--dev-size", type=int, default=300, help="dev sentences per set")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep-names", action="store_true", help="one set: keep its predicates' own names")
    args, train_args = parser.parse_known_args()
    if args.keep_names and len(args.sets) > 1:
        parser.error("--keep-names takes one set (the sets' names would meet in one head)")
    files = args.output.with_name(args.output.name + ".data")
    files.mkdir(parents=True, exist_ok=True)
    train, dev, relations = combine(args.sets, args.data, args.dev_size, args.seed, args.keep_names)
    write_jsonl(train, files / "train.jsonl")
    write_jsonl(dev, files / "dev.jsonl")
    write_schema(files / "schema.jsonl", relations)
    # what the start saw, for small_data.py
    sources = [os.path.relpath(args.data / file, ROOT) for name in args.sets for file in SETS[name][0]]
    (files / "sources.json").write_text(json.dumps(sources, indent=2))
    command = [sys.executable, "-m", "triplex", "train", "--train", str(files / "train.jsonl"),
               "--dev", str(files / "dev.jsonl"), "--schema", str(files / "schema.jsonl"),
               "--encoder", args.encoder, "--output", str(args.output), "--seed", str(args.seed),
               *train_args]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
