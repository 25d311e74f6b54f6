"""The ``triplex`` command line: train, evaluate, extract.

Heavy imports (torch, transformers) happen inside the commands so that ``--help`` and input errors
answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import astuple
from pathlib import Path

from triplex import ModelError, __version__
from triplex.model.engine import is_export
from triplex.model.progress import progress
from triplex.model.progress import settings as progress_settings
from triplex.model.schema import CONFIG_FILE, THRESHOLDS_METAVAR, Thresholds
from triplex.model.tokenize import lone_surrogate
from triplex.training.data import (
    FORMATS,
    DataError,
    check_schema,
    derive_schema,
    find_schema,
    fingerprint,
    read_dataset,
    read_schema,
    with_types_from,
)
from triplex.training.settings import STATE_FILE, TrainSettings

STREAM_CHUNK = 1024  # texts handed to the engine at a time by extract --input


class CliError(Exception):
    """A problem with the command's input; printed as one line."""


def log(message: str) -> None:
    if not progress_settings["quiet"]:
        print(message, file=sys.stderr, flush=True)


def looks_local(name: str) -> bool:
    """A name that reads as a path is never sent to the Hugging Face hub (whose retries take half a minute):
    it starts with . / or ~, has more than one /, or its first part is a folder here."""
    first = name.split("/")[0]
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists() or Path(first).is_dir()


def check_encoder(name: str) -> None:
    """An encoder folder must hold a readable config.json; a hub id is left to transformers."""
    if not looks_local(name):
        return
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        raise CliError(
            f"encoder '{name}' is not a model folder (no config.json there); "
            "give a Hugging Face model id or a folder holding config.json, weights and tokenizer files"
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CliError(
            f"{config}: not valid JSON ({str(error).splitlines()[0]}); restore the encoder's files"
        ) from None


def check_model_dir(path: str) -> Path:
    directory = Path(path)
    if is_export(directory):
        raise CliError(f"'{path}' is an export folder; export from the trained model folder that 'triplex train' wrote")
    if not (directory / CONFIG_FILE).is_file():
        raise CliError(f"'{path}' is not a trained model folder (no {CONFIG_FILE}); train one with 'triplex train'")
    return directory


def check_output_folder(path: str, overwrite: bool = True) -> Path:
    """A folder to write into: its parent must exist; with ``overwrite`` False it must be empty."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"--output '{path}' is a file, not a folder; give a folder path")
    if not folder.parent.is_dir():
        raise CliError(f"--output '{path}': the folder '{folder.parent}' does not exist; create it first")
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise CliError(
            f"--output '{path}' is not empty; pass --overwrite to replace what is there, or --resume to continue"
        )
    return folder


def check_output_file(path: str | None, flag: str = "--output") -> None:
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{flag} '{path}' is a folder; give a file path")
    if not target.parent.is_dir():
        raise CliError(f"{flag} '{path}': the folder '{target.parent}' does not exist; create it first")


def check_encoder_loads(name: str) -> None:
    """Read the encoder's config before any training work: a broken or unknown one ends here in one line."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError) as error:
        raise CliError(f"cannot load encoder '{name}': {str(error).strip().splitlines()[0]}") from None


def check_device(device: str) -> None:
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise CliError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError(f"--device {device}: PyTorch sees no CUDA GPU here; use --device cpu (or auto)")


def load_model(path: str, device: str, batch_size: int = 32, thresholds: str | None = None):
    """The ``Extractor`` of ``triplex.load``: an export folder (ONNX Runtime) or a checkpoint (PyTorch)."""
    import triplex

    try:
        pair = astuple(Thresholds.parse(thresholds)) if thresholds else None
        return triplex.load(path, provider=device, batch_size=batch_size, thresholds=pair).extractor
    except (triplex.ModelError, ValueError) as error:
        raise CliError(str(error)) from None


def epochs_value(text: str) -> int | None:
    """``--epochs``: a whole number, or ``auto`` (None: training.settings.auto_epochs decides)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a whole number nor 'auto'") from None


def command_train(args: argparse.Namespace) -> None:
    if args.epochs is not None and args.epochs < 1:
        raise CliError(f"--epochs {args.epochs}: train for at least 1 epoch")
    if not args.subject_loss_weight > 0:  # also NaN
        raise CliError(f"--subject-loss-weight {args.subject_loss_weight}: give a positive number")
    if not 0 <= args.mask_rate < 1:  # also NaN
        raise CliError(f"--mask-rate {args.mask_rate}: give a share from 0 up to, not including, 1")
    if args.thresholds:
        try:
            Thresholds.parse(args.thresholds)
        except ValueError as error:
            raise CliError(f"--thresholds: {error}") from None
    output = check_output_folder(args.output, overwrite=args.overwrite or args.resume)
    if args.resume and not (output / STATE_FILE).is_file():
        raise CliError(f"--resume: '{args.output}' holds no training state ({STATE_FILE}); train without --resume")
    check_encoder(args.encoder)
    train_examples, raw_triples, format, summary = read_dataset(args.train, args.format)
    dev_examples, _, _, dev_summary = read_dataset(args.dev, args.format or format)
    log(f"read {args.train} as {format}: {summary.line()}")
    log(f"read {args.dev}: {dev_summary.line()}")
    schema = Path(args.schema) if args.schema else find_schema(Path(args.train))
    derived = derive_schema(raw_triples)
    relations = with_types_from(read_schema(schema), derived) if schema else derived
    log(f"schema: {len(relations)} relations from {schema or 'the training data'}")
    check_schema(relations, train_examples, Path(args.train))
    check_schema(relations, dev_examples, Path(args.dev))
    if not any(example.triples for example in train_examples):
        raise CliError(f"{args.train}: no triple could be placed in its text; nothing to learn from")
    check_device(args.device)
    check_encoder_loads(args.encoder)

    from triplex.training.train import train

    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        freeze_embeddings=args.freeze_embeddings,
        negative_subjects=args.negative_subjects,
        subject_loss_weight=args.subject_loss_weight,
        mask_rate=args.mask_rate,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        accumulate=args.accumulate,
        resume=args.resume,
        thresholds=args.thresholds,
        precision=args.precision,
    )
    files = [fingerprint(role, path) for role, path in (("train", args.train), ("dev", args.dev), ("schema", schema))]
    try:
        best = train(
            train_examples,
            dev_examples,
            relations,
            args.encoder,
            output,
            settings,
            summary,
            log,
            [f for f in files if f],
        )
    except OSError as error:  # transformers' way of saying the weights cannot be loaded
        raise CliError(f"cannot load encoder '{args.encoder}': {str(error).splitlines()[0]}") from None
    figures = f"best dev F1 {best['f1']:.4f} (partial {best['partial_f1']:.4f}) at epoch {best['epoch']}"
    if "f1_at_chosen_thresholds" in best:
        figures += f", {best['f1_at_chosen_thresholds']:.4f} at the thresholds chosen on dev"
    log(f"{figures}; saved in {args.output}")


def store_thresholds(extractor, texts: list[str], gold: list, args: argparse.Namespace) -> None:
    """``evaluate --choose-thresholds``: the pair with the best F1 on the data, into the model's folder."""
    from triplex.training.evaluate import record_thresholds

    if not any(gold):
        raise CliError(f"--choose-thresholds: {args.data} has no triples to choose thresholds on")
    chosen, best = record_thresholds(extractor, texts, gold, args.data)
    extractor.config.save(Path(args.model))
    log(f"thresholds chosen on {args.data}: {chosen.describe()} (F1 {best['f1']:.4f}); stored in {args.model}")


def command_evaluate(args: argparse.Namespace) -> None:
    from triplex.training.evaluate import score, write_errors

    check_output_file(args.metrics_out, "--metrics-out")
    check_output_file(args.errors, "--errors")
    examples, _, format, summary = read_dataset(args.data, args.format)
    extractor = load_model(args.model, args.device, args.batch_size, args.thresholds)
    log(f"read {args.data} as {format}: {summary.line()}")
    check_schema(extractor.config.relations, examples, Path(args.data))
    texts, gold = [example.text for example in examples], [example.triples for example in examples]
    if args.choose_thresholds:
        store_thresholds(extractor, texts, gold, args)
    started = time.perf_counter()
    predicted = [found.triples for found in extractor.extract(texts, progress=True)]
    metrics = score(gold, predicted) | {"seconds": time.perf_counter() - started}
    print(
        f"sentences {metrics['sentences']}  exact P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
        f"F1 {metrics['f1']:.4f}  partial P {metrics['partial_precision']:.4f} R {metrics['partial_recall']:.4f} "
        f"F1 {metrics['partial_f1']:.4f}  ({metrics['seconds']:.1f} s)"
    )
    for predicate, figures in metrics["per_predicate"].items():
        ratios = " ".join(f"{name} {figures[key]:.4f}" for name, key in zip("PRF", ("precision", "recall", "f1")))
        print(f"  {predicate:40s} {ratios}  gold {figures['gold']}  predicted {figures['predicted']}")
    if args.metrics_out:
        Path(args.metrics_out).write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    if args.errors:
        count = write_errors(Path(args.errors), texts, gold, predicted)
        log(f"{count} sentences with errors written to {args.errors}")


def is_bulk(args: argparse.Namespace) -> bool:
    """Whether ``extract`` writes a results folder (service.bulk) rather than one stream of JSON lines."""
    folder = args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()
    return bool(args.ray or args.output_format or folder)


def command_bulk(args: argparse.Namespace) -> None:
    try:
        from triplex.service.bulk import (
            ENGINE_BATCHES_PER_CALL,
            BulkError,
            ExtractBatch,
            count_records,
            input_files,
            output_format,
            run_local,
        )
    except ImportError:
        raise CliError('a results folder needs pyarrow: pip install "triplex[bulk]"') from None
    if args.text is not None or args.input == "-":
        raise CliError("a results folder is written from --input files; give a file, a folder or a glob")
    if not is_export(args.model):
        raise CliError(f"'{args.model}' is not an export folder; bulk extraction runs exports ('triplex export')")
    output = Path(args.output)
    try:
        files = input_files(args.input)
        fmt = output_format(output, args.output_format)
        if args.ray:
            try:
                from triplex.service.ray_bulk import run_ray
                from triplex.service.ray_cluster import ClusterError
            except ImportError:
                raise CliError('--ray needs Ray: pip install "triplex[ray]"') from None
            try:
                summary = run_ray(files, output, fmt, args)
            except ClusterError as error:
                raise CliError(str(error)) from None
        else:
            extract = ExtractBatch(
                args.model, args.device, args.threads, args.batch_size, args.thresholds, streams=args.streams
            )
            with progress(count_records(files), "extract", "text") as bar:
                texts = args.batch_size * ENGINE_BATCHES_PER_CALL
                summary = run_local(files, output, fmt, extract, args.max_chars, texts, bar.update)
    except BulkError as error:
        raise CliError(str(error)) from None
    log(f"{summary.line()}; results in {output / 'triples'}, errors in {output / 'errors.jsonl'}")


def command_extract(args: argparse.Namespace) -> None:
    if is_bulk(args):
        return command_bulk(args)
    check_output_file(args.output)
    if args.text is not None:
        problem = lone_surrogate(args.text)
        if problem:
            raise CliError(f"--text {problem}")
        records = [{"text": args.text}]
    else:
        records = read_records(args.input)
        if not records:
            log(f"warning: {args.input} holds no texts; nothing to extract")
    extractor = load_model(args.model, args.device, args.batch_size, args.thresholds)
    if args.text is not None:
        found = extractor.extract([args.text])[0]
        print(json.dumps(as_json(records[0], found), ensure_ascii=False, indent=2))
        return
    to_file = args.output not in (None, "-")
    target = open(args.output, "w", encoding="utf-8") if to_file else contextlib.nullcontext(sys.stdout)  # noqa: SIM115
    with target as output, progress(len(records), "extract", "text", enabled=to_file) as bar:
        for begin in range(0, len(records), STREAM_CHUNK):
            chunk = records[begin : begin + STREAM_CHUNK]
            for record, found in zip(chunk, extractor.extract([record["text"] for record in chunk])):
                output.write(json.dumps(as_json(record, found), ensure_ascii=False) + "\n")
            bar.update(len(chunk))


def as_json(record: dict, found) -> dict:
    """The input record with every field it had (id, metadata), and its triples."""
    return record | {"triples": [triple.to_dict() for triple in found.triples], "windows": found.windows}


def read_records(source: str) -> list[dict]:
    """Records from JSON lines (a file, or standard input for ``-``): ``{"text": ..., ...}`` objects, whose
    other fields are kept, or bare JSON strings."""
    if source != "-" and not Path(source).is_file():
        raise CliError(f"{source}: no such file; check the path")
    name = "standard input" if source == "-" else source
    handle = sys.stdin if source == "-" else open(source, "rb")  # noqa: SIM115
    records = []
    try:
        for number, raw in enumerate(handle.buffer if source == "-" else handle, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise CliError(f"{name}:{number}: not UTF-8 (byte {error.start}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise CliError(f"{name}:{number}: not valid JSON ({error.msg})") from None
            record = item if isinstance(item, dict) else {"text": item}
            if not isinstance(record.get("text"), str):
                raise CliError(f'{name}:{number}: expected a JSON string or an object with a "text" string')
            problem = lone_surrogate(record["text"])
            if problem:
                raise CliError(f"{name}:{number}: the text {problem}")
            records.append(record)
    finally:
        if source != "-":
            handle.close()
    return records


def command_export(args: argparse.Namespace) -> None:
    check_model_dir(args.model)
    output = check_output_folder(args.output)
    if args.precision not in ("fp32", "fp16", "int8"):
        raise CliError(f"--precision {args.precision}: use fp32, fp16 or int8")
    check_texts = [example.text for example in read_dataset(args.check_data)[0]] if args.check_data else None
    from triplex.model.export import export

    try:
        info = export(Path(args.model), output, args.precision, log, check_texts)
    except ValueError as error:
        raise CliError(str(error)) from None
    log(f"exported {args.precision} to {args.output} (fp32 parity {info.fp32_max_difference:.1e})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triplex", description="Relational triple extraction: train, evaluate, extract, export, serve."
    )
    parser.add_argument("--version", action="version", version=f"triplex {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    formats = f"data format, one of {', '.join(FORMATS)} (default: detected from the file)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )

    train = command("train", "train an extractor on labelled data")
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
    train.add_argument(
        "--epochs",
        type=epochs_value,
        default="auto",
        help="passes over the training data; auto: up to 20, fewer for large data and encoders (see README)",
    )
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="sentences per batch")
    train.add_argument("--lr", type=float, default=defaults.learning_rate, help="encoder learning rate")
    train.add_argument(
        "--head-lr", type=float, default=defaults.head_learning_rate, help="learning rate of the pointer heads"
    )
    train.add_argument(
        "--warmup",
        type=float,
        default=defaults.warmup,
        help="fraction of steps spent warming up (at most a third of an epoch)",
    )
    train.add_argument(
        "--ema-decay", type=float, default=defaults.ema_decay, help="weight of the past in the averaged weights kept"
    )
    train.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=defaults.freeze_embeddings,
        help="keep the encoder's word embeddings as pretrained",
    )
    train.add_argument(
        "--max-length", type=int, default=defaults.max_length, help="tokens per sentence, special tokens included"
    )
    train.add_argument(
        "--negative-subjects",
        action="store_true",
        help="also train the object heads on gold objects that are no subject, to find nothing for them",
    )
    train.add_argument(
        "--subject-loss-weight",
        type=float,
        default=defaults.subject_loss_weight,
        help="how many times the subject loss counts beside the object loss (see the README)",
    )
    train.add_argument(
        "--mask-rate",
        type=float,
        default=defaults.mask_rate,
        help="share of training tokens hidden behind the mask token, drawn anew for every batch (0: none)",
    )
    train.add_argument("--accumulate", type=int, default=defaults.accumulate, help="batches per optimizer step")
    train.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    train.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    train.add_argument("--resume", action="store_true", help="continue from the training state in --output")
    train.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=defaults.precision,
        help="autocast type of the forward pass; auto: bf16 on a GPU, and on a CPU where it measured faster",
    )
    train.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="keep these pointer thresholds, subjects' then objects' if four (default: the best on --dev)",
    )
    train.add_argument("--overwrite", action="store_true", help="train into a non-empty --output, replacing it")
    train.set_defaults(run=command_train)

    evaluate = command("evaluate", "precision, recall and F1 of a model on labelled data")
    evaluate.add_argument("--model", required=True, help="export folder or trained model folder")
    evaluate.add_argument("--data", required=True, help="labelled data file")
    evaluate.add_argument("--format", help=formats)
    evaluate.add_argument("--metrics-out", help="write the metrics as JSON here")
    evaluate.add_argument("--errors", help="write missed/spurious triples per sentence as JSON lines here")
    evaluate.add_argument("--batch-size", type=int, default=64, help="windows per batch")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    chosen = evaluate.add_mutually_exclusive_group()
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
    evaluate.set_defaults(run=command_evaluate)

    extract = command("extract", "print the triples of a text, or of a file of texts, as JSON")
    extract.add_argument("--model", required=True, help="export folder or trained model folder")
    source = extract.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text")
    source.add_argument(
        "--input", help='JSON lines of {"text": ...} objects (other fields are kept) or strings; - for standard input'
    )
    extract.add_argument(
        "--output",
        default="-",
        help="JSON lines out, - for standard output; a folder (an existing one, or a path ending in /) gets "
        "triples/, errors.jsonl and summary.json, as with --ray",
    )
    extract.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    extract.add_argument("--device", default="auto", help="auto, cpu or cuda")
    extract.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="pointer thresholds instead of the model's own; four: subjects' pair, then objects'",
    )
    bulk = extract.add_argument_group("results folder (--input: a file, a folder or a glob of .jsonl/.parquet)")
    bulk.add_argument(
        "--output-format", choices=["jsonl", "parquet"], help="default: by the folder's suffix, else jsonl"
    )
    bulk.add_argument("--max-chars", type=int, default=100_000, help="longer texts go to errors.jsonl")
    bulk.add_argument(
        "--threads", type=int, default=0, help="CPU threads per engine (0: all cores, or the actor's share)"
    )
    bulk.add_argument(
        "--streams",
        type=int,
        default=0,
        help="engine batches run at once on the CPU, sharing --threads (0: one single-threaded batch per thread)",
    )
    bulk.add_argument("--ray", action="store_true", help='run as a Ray Data job (pip install "triplex[ray]")')
    bulk.add_argument("--address", help="Ray cluster: auto (the one on this machine) or HOST:PORT; default: start one")
    bulk.add_argument("--actors", default="auto", help="N, or MIN:MAX to autoscale; auto: one per GPU, else per 4 CPUs")
    bulk.add_argument(
        "--gpus-per-actor",
        type=float,
        help="GPUs per actor (default: 1 when the cluster has GPUs, 0 with --device cpu)",
    )
    extract.set_defaults(run=command_extract)

    export = command("export", "export a trained model to ONNX, checked against PyTorch")
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
    progress_settings["quiet"] = args.quiet
    try:
        args.run(args)
    except (CliError, DataError, ModelError) as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("triplex: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
