"""``triplex evaluate``: precision, recall and F1 of a model on labelled data, with PyTorch's own scoring."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from triplex.cli.common import CliError, Console, load_model
from triplex.files import FileError, output_file
from triplex.model.extractor import Extractor
from triplex.model.schema import THRESHOLDS_METAVAR
from triplex.training.data import check_schema, read_dataset


def add_parser(command: argparse.ArgumentParser, formats: str) -> None:
    command.add_argument("--model", required=True, help="export folder or trained model folder")
    command.add_argument("--data", required=True, help="labelled data file")
    command.add_argument("--format", help=formats)
    command.add_argument("--metrics-out", help="write the metrics as JSON here")
    command.add_argument("--errors", help="write missed/spurious triples per sentence as JSON lines here")
    command.add_argument("--batch-size", type=int, default=64, help="windows per batch")
    command.add_argument("--device", default="auto", help="auto, cpu or cuda")
    chosen = command.add_mutually_exclusive_group()
    chosen.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="pointer thresholds instead of the model's own; four: subjects' pair, then objects'",
    )
    chosen.add_argument(
        "--choose-thresholds",
        action="store_true",
        help="choose the thresholds with the best F1 on --data (as training does on dev), store them in --model",
    )
    command.set_defaults(run=run)


def store_thresholds(
    extractor: Extractor, texts: list[str], gold: list, args: argparse.Namespace, console: Console
) -> Extractor:
    """``--choose-thresholds``: the pair with the best F1 on the data, stored in the model's folder; the
    extractor at those thresholds."""
    from triplex.training.evaluate import choose_thresholds

    if not any(gold):
        raise CliError(f"--choose-thresholds: {args.data} has no triples to choose thresholds on")
    choice = choose_thresholds(extractor, texts, gold)
    config = extractor.config
    training = config.training | {"thresholds": choice.record(args.data)}
    dataclasses.replace(config, thresholds=choice.thresholds, training=training).save(Path(args.model))
    console.log(
        f"thresholds chosen on {args.data}: {choice.thresholds.describe()} (F1 {choice.figures['f1']:.4f}); "
        f"stored in {args.model}"
    )
    return extractor.with_thresholds(choice.thresholds)


def print_metrics(metrics: dict) -> None:
    print(
        f"sentences {metrics['sentences']}  exact P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
        f"F1 {metrics['f1']:.4f}  partial P {metrics['partial_precision']:.4f} R {metrics['partial_recall']:.4f} "
        f"F1 {metrics['partial_f1']:.4f}  ({metrics['seconds']:.1f} s)"
    )
    for predicate, figures in metrics["per_predicate"].items():
        ratios = " ".join(f"{name} {figures[key]:.4f}" for name, key in zip("PRF", ("precision", "recall", "f1")))
        print(f"  {predicate:40s} {ratios}  gold {figures['gold']}  predicted {figures['predicted']}")


def run(args: argparse.Namespace, console: Console) -> None:
    from triplex.training.evaluate import score, write_errors

    try:
        output_file(args.metrics_out, "--metrics-out")
        output_file(args.errors, "--errors")
    except FileError as error:
        raise CliError(str(error)) from None
    examples, _, format, summary = read_dataset(args.data, args.format)
    extractor = load_model(args.model, args.device, args.batch_size, args.thresholds)
    console.log(f"read {args.data} as {format}: {summary.line()}")
    check_schema(extractor.config.relations, examples, Path(args.data))
    texts, gold = [example.text for example in examples], [example.triples for example in examples]
    if args.choose_thresholds:
        extractor = store_thresholds(extractor, texts, gold, args, console)
    started = time.perf_counter()
    windows = extractor.windows(texts)
    with console.bar(sum(map(len, windows)), "extract", "window", leave=False) as bar:
        predicted = [found.triples for found in extractor.extract_windows(windows, bar.update)]
    metrics = score(gold, predicted) | {"seconds": time.perf_counter() - started}
    print_metrics(metrics)
    if args.metrics_out:
        Path(args.metrics_out).write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    if args.errors:
        count = write_errors(Path(args.errors), texts, gold, predicted)
        console.log(f"{count} sentences with errors written to {args.errors}")
