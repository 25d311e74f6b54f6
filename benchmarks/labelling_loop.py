"""The labelling loop, simulated: does labelling the texts the model is least sure of teach it more than
labelling texts at random? Gold labels stand in for the annotator.

    python benchmarks/labelling_loop.py --start 200 --add 200 --rounds 4 --pool 2000 --epochs 6

Both strategies begin with the same random labelled texts and the same model. Each round adds ``--add``
texts from a pool of ``--pool`` unlabelled training texts: those of lowest ``model.label_studio.confidence`` under the
current model (what Label Studio's "order by prediction score" puts first), or a random draw; then a model
is trained on everything labelled so far, from the plain encoder with the same settings and epochs (the
budget) in every round. Dev F1 (the kept epoch, thresholds chosen on dev) per round and strategy goes to
benchmarks/results/labelling_loop.json as ``{"dataset": ..., "rounds": [{"labels": N, "uncertainty": F1,
"random": F1}, ...]}``, the medians over the seeds run so far (``--seed``: another draw of the first texts,
the pool, the random choices and the trainings), each seed's own rounds under ``seeds``; the file is written
after every training, so a cut run keeps its rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from common import RESULTS, ROOT, machine

import triplex
from triplex.model.label_studio import candidates_of, confidence
from triplex.training.data import Example, ReadSummary, read_dataset, read_schema
from triplex.training.settings import TrainSettings
from triplex.training.train import train

SETS = {  # training file, dev file, schema, encoder (under ../shared)
    "webnlg_star": (
        "data/webnlg_star_casrel/train_triples.json",
        "data/webnlg_star_casrel/dev_triples.json",
        "data/webnlg_star_casrel/rel2id.json",
        "models/minilm-l6-h384-uncased",
    ),
}


def fit(args: argparse.Namespace, examples: list[Example], output: Path) -> float:
    """Train on ``examples`` within the budget; the kept epoch's dev F1."""
    _, dev, schema, encoder = SETS[args.set]
    dev_examples = read_dataset(args.shared / dev)[0]
    relations = read_schema(args.shared / schema)
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    best = train(examples, dev_examples, relations, str(args.shared / encoder), output, settings, ReadSummary(),
                 log=lambda message: None)  # fmt: skip
    return round(best.get("f1_at_chosen_thresholds", best["f1"]), 4)


def least_sure(model: Path, pool: list[int], texts: list[str], count: int) -> list[int]:
    """The ``count`` pool texts the model is least sure of (lowest confidence first)."""
    extractor = candidates_of(triplex.load(model, provider="cpu", batch_size=64))
    found = extractor.extract([texts[i] for i in pool])
    scores = {i: confidence(triples) for i, triples in zip(pool, found)}
    return sorted(pool, key=scores.__getitem__)[:count]


def record_rounds(args: argparse.Namespace, rounds: list[dict], minutes: float) -> None:
    """This seed's rounds beside the other seeds' in the result file, and the medians over all of them."""
    path = RESULTS / "labelling_loop.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    seeds = old.get("seeds", {}) if old.get("dataset") == args.set else {}
    seeds[str(args.seed)] = {"rounds": rounds, "minutes": minutes}
    medians = []
    for number, figures in enumerate(rounds):
        runs = [seed["rounds"][number] for seed in seeds.values() if len(seed["rounds"]) > number]
        median = {name: round(statistics.median(run[name] for run in runs), 4) for name in ("uncertainty", "random")}
        medians.append({"labels": figures["labels"], **median, "seeds": len(runs)})
    settings = {name: value for name, value in vars(args).items() if name != "seed"}
    record = {"dataset": args.set, "settings": settings | {"shared": "../shared", "work": str(args.work.parent)},
              "rounds": medians, "seeds": seeds, "machine": machine()}  # fmt: skip
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=SETS, default="webnlg_star")
    parser.add_argument("--start", type=int, default=200, help="labelled texts before the first round")
    parser.add_argument("--add", type=int, default=200, help="texts labelled per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pool", type=int, default=2000, help="unlabelled texts to choose from (a user's corpus)")
    parser.add_argument("--epochs", type=int, default=6, help="the same for every training: the budget")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "labelling-loop")
    args = parser.parse_args()
    args.work = args.work / f"seed{args.seed}"
    examples = read_dataset(args.shared / SETS[args.set][0])[0]
    texts = [example.text for example in examples]
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    first, order = order[: args.start], order[: args.start + args.pool]
    started = time.perf_counter()
    first_f1 = fit(args, [examples[i] for i in first], args.work / "round0")
    rounds = [{"labels": args.start, "uncertainty": first_f1, "random": first_f1}]
    labelled = {"uncertainty": list(first), "random": list(first)}
    models = {"uncertainty": args.work / "round0", "random": args.work / "round0"}
    draws = random.Random(args.seed + 1)
    for round_number in range(1, args.rounds + 1):
        figures = {"labels": args.start + round_number * args.add}
        for strategy in ("uncertainty", "random"):
            chosen = set(labelled[strategy])
            pool = [i for i in order if i not in chosen]
            if strategy == "uncertainty":
                labelled[strategy] += least_sure(models[strategy], pool, texts, args.add)
            else:
                labelled[strategy] += draws.sample(pool, args.add)
            models[strategy] = args.work / f"round{round_number}-{strategy}"
            figures[strategy] = fit(args, [examples[i] for i in labelled[strategy]], models[strategy])
            print(round_number, strategy, figures[strategy], flush=True)
        rounds.append(figures)
        record_rounds(args, rounds, round((time.perf_counter() - started) / 60, 1))


if __name__ == "__main__":
    main()
