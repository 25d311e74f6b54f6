"""The ``triplex`` command line: train, evaluate, extract.

Heavy imports (torch, transformers) happen inside the commands so that ``--help`` and input errors
answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm
from triplex.model.schema import CONFIG_FILE
from triplex.training.data import (
    FORMATS,
    DataError,
    check_schema,
    derive_schema,
    find_schema,
    read_dataset,
    read_schema,
)
from triplex.training.settings import TrainSettings

STREAM_CHUNK = 1024  # texts handed to the engine at a time by extract --input


class CliError(Exception):
    """A problem with the command's input; printed as one line."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_encoder(name: str) -> None:
    looks_like_path = name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1
    if looks_like_path and not (Path(name).expanduser() / "config.json").is_file():
        raise CliError(
            f"encoder '{name}' is not a model folder (no config.json there); "
            "give a Hugging Face model id or a folder holding config.json, weights and tokenizer files"
        )


def check_model_dir(path: str) -> Path:
    directory = Path(path)
    if not (directory / CONFIG_FILE).is_file():
        raise CliError(f"'{path}' is not a trained model folder (no {CONFIG_FILE}); train one with 'triplex train'")
    return directory


def load_model(path: str, device: str, batch_size: int = 32):
    """The ``Extractor`` of ``triplex.load``: an export folder (ONNX Runtime) or a checkpoint (PyTorch)."""
    import triplex

    try:
        return triplex.load(path, provider=device, batch_size=batch_size).extractor
    except triplex.ModelError as error:
        raise CliError(str(error)) from None


def command_train(args: argparse.Namespace) -> None:
    check_encoder(args.encoder)
    train_examples, raw_triples, format, summary = read_dataset(args.train, args.format)
    dev_examples, _, _, dev_summary = read_dataset(args.dev, args.format or format)
    log(f"read {args.train} as {format}: {summary.line()}")
    log(f"read {args.dev}: {dev_summary.line()}")
    schema = Path(args.schema) if args.schema else find_schema(Path(args.train))
    relations = read_schema(schema) if schema else derive_schema(raw_triples)
    log(f"schema: {len(relations)} relations from {schema or 'the training data'}")
    check_schema(relations, train_examples, Path(args.train))
    check_schema(relations, dev_examples, Path(args.dev))
    if not any(example.triples for example in train_examples):
        raise CliError(f"{args.train}: no triple could be placed in its text; nothing to learn from")

    from triplex.training.train import train

    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        accumulate=args.accumulate,
        resume=args.resume,
    )
    try:
        best = train(train_examples, dev_examples, relations, args.encoder, Path(args.output), settings, summary, log)
    except OSError as error:
        raise CliError(f"cannot load encoder '{args.encoder}': {str(error).splitlines()[0]}") from None
    figures = f"best dev F1 {best['f1']:.4f} (partial {best['partial_f1']:.4f}) at epoch {best['epoch']}"
    log(f"{figures}; saved in {args.output}")


def command_evaluate(args: argparse.Namespace) -> None:
    from triplex.training.evaluate import score, write_errors

    extractor = load_model(args.model, args.device, args.batch_size)
    examples, _, format, summary = read_dataset(args.data, args.format)
    log(f"read {args.data} as {format}: {summary.line()}")
    check_schema(extractor.config.relations, examples, Path(args.data))
    started = time.perf_counter()
    predicted = [found.triples for found in extractor.extract([example.text for example in examples], progress=True)]
    gold = [example.triples for example in examples]
    metrics = score(gold, predicted) | {"seconds": time.perf_counter() - started}
    print(
        f"sentences {metrics['sentences']}  exact P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
        f"F1 {metrics['f1']:.4f}  partial P {metrics['partial_precision']:.4f} R {metrics['partial_recall']:.4f} "
        f"F1 {metrics['partial_f1']:.4f}  ({metrics['seconds']:.1f} s)"
    )
    for predicate, figures in metrics["per_predicate"].items():
        ratios = " ".join(f"{name} {figures[key]:.4f}" for name, key in zip("PRF", ("precision", "recall", "f1")))
        print(f"  {predicate:40s} {ratios} gold {figures['gold']}")
    if args.metrics_out:
        Path(args.metrics_out).write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    if args.errors:
        count = write_errors(Path(args.errors), [example.text for example in examples], gold, predicted)
        log(f"{count} sentences with errors written to {args.errors}")


def command_extract(args: argparse.Namespace) -> None:
    extractor = load_model(args.model, args.device, args.batch_size)
    if args.text is not None:
        found = extractor.extract([args.text])[0]
        print(json.dumps(as_json(args.text, found), ensure_ascii=False, indent=2))
        return
    texts = read_texts(Path(args.input))
    target = open(args.output, "w", encoding="utf-8") if args.output else contextlib.nullcontext(sys.stdout)  # noqa: SIM115
    with target as output, tqdm(total=len(texts), desc="extract", unit="text", disable=not args.output) as bar:
        for begin in range(0, len(texts), STREAM_CHUNK):
            chunk = texts[begin : begin + STREAM_CHUNK]
            for text, found in zip(chunk, extractor.extract(chunk)):
                output.write(json.dumps(as_json(text, found), ensure_ascii=False) + "\n")
            bar.update(len(chunk))


def as_json(text: str, found) -> dict:
    return {"text": text, "triples": [triple.to_dict() for triple in found.triples], "windows": found.windows}


def read_texts(path: Path) -> list[str]:
    """Texts from JSON lines: ``{"text": ...}`` objects or bare JSON strings."""
    if not path.is_file():
        raise CliError(f"{path}: no such file; check the path")
    texts = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise CliError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise CliError(f'{path}:{number}: expected a JSON string or an object with a "text" string')
            texts.append(text)
    return texts


def command_export(args: argparse.Namespace) -> None:
    check_model_dir(args.model)
    from triplex.model.export import export

    check_texts = [example.text for example in read_dataset(args.check_data)[0]] if args.check_data else None
    try:
        info = export(Path(args.model), Path(args.output), args.precision, log, check_texts)
    except ValueError as error:
        raise CliError(str(error)) from None
    log(f"exported {args.precision} to {args.output} (fp32 parity {info.fp32_max_difference:.1e})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triplex", description="Relational triple extraction: train, evaluate, extract."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    formats = f"data format, one of {', '.join(FORMATS)} (default: detected from the file)"

    train = commands.add_parser("train", help="train an extractor on labelled data")
    train.add_argument("--train", required=True, help="training data file")
    train.add_argument("--dev", required=True, help="dev data file, evaluated after every epoch")
    train.add_argument(
        "--schema", help="schema file (default: one beside --train, else the training data's predicates)"
    )
    train.add_argument("--format", help=formats)
    train.add_argument(
        "--encoder", required=True, help="Hugging Face model id or local folder of a BERT-family encoder"
    )
    train.add_argument("--output", required=True, help="folder for the best checkpoint and the training state")
    defaults = TrainSettings()
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.learning_rate, help="encoder learning rate")
    train.add_argument(
        "--head-lr", type=float, default=defaults.head_learning_rate, help="learning rate of the pointer heads"
    )
    train.add_argument("--warmup", type=float, default=defaults.warmup, help="fraction of steps spent warming up")
    train.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    train.add_argument(
        "--max-length", type=int, default=defaults.max_length, help="tokens per sentence, special tokens included"
    )
    train.add_argument("--accumulate", type=int, default=defaults.accumulate, help="batches per optimizer step")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    train.add_argument("--resume", action="store_true", help="continue from the training state in --output")
    train.set_defaults(run=command_train)

    evaluate = commands.add_parser("evaluate", help="precision, recall and F1 of a model on labelled data")
    evaluate.add_argument("--model", required=True, help="export folder or trained model folder")
    evaluate.add_argument("--data", required=True, help="labelled data file")
    evaluate.add_argument("--format", help=formats)
    evaluate.add_argument("--metrics-out", help="write the metrics as JSON here")
    evaluate.add_argument("--errors", help="write missed/spurious triples per sentence as JSON lines here")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(run=command_evaluate)

    extract = commands.add_parser("extract", help="print the triples of a text, or of a file of texts, as JSON")
    extract.add_argument("--model", required=True, help="export folder or trained model folder")
    source = extract.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text")
    source.add_argument("--input", help='JSON lines of {"text": ...} or strings: the offline bulk path')
    extract.add_argument("--output", help="JSON lines out (default: standard output)")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--device", default="auto", help="auto, cpu or cuda")
    extract.set_defaults(run=command_extract)

    export = commands.add_parser("export", help="export a trained model to ONNX, checked against PyTorch")
    export.add_argument("--model", required=True, help="trained model folder")
    export.add_argument("--output", required=True, help="export folder to write")
    export.add_argument("--precision", default="fp32", help="fp32 (reference), fp16 (GPU) or int8 (CPU)")
    export.add_argument(
        "--check-data",
        help="a data file (any training format) whose sentences judge fp16/int8 by their triples against PyTorch's",
    )
    export.set_defaults(run=command_export)

    commands.add_parser("serve", help="serve an export folder over HTTP (see 'triplex serve --help')")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service parses its own flags and needs no training code
        from triplex.service.__main__ import serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CliError, DataError) as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("triplex: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
