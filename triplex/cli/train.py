"""``triplex train``: read the data and the schema, check everything that can be checked, then train."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from triplex.cli.common import CliError, Console, parse_thresholds
from triplex.files import FileError, output_folder
from triplex.model.schema import CONFIG_FILE, THRESHOLDS_METAVAR, ExtractorConfig
from triplex.training.data import (
    check_schema,
    derive_schema,
    find_schema,
    fingerprint,
    read_dataset,
    read_schema,
    with_types_from,
)
from triplex.training.settings import STATE_FILE, TrainSettings, check_device


def add_parser(command: argparse.ArgumentParser, formats: str) -> None:
    command.add_argument("--train", required=True, help="training data file")
    command.add_argument("--dev", required=True, help="dev data file, evaluated after every epoch")
    command.add_argument(
        "--schema", help="schema file (default: one beside --train, else the training data's predicates)"
    )
    command.add_argument("--format", help=formats)
    command.add_argument(
        "--encoder",
        help="Hugging Face model id or local folder of a BERT-family encoder (default with --init-from: its encoder)",
    )
    command.add_argument(
        "--init-from",
        metavar="MODEL",
        help="a trained model folder to start from: its encoder, subject head, Conditional LayerNorm, and the "
        "object heads of the predicates it shares with this schema",
    )
    command.add_argument("--output", required=True, help="folder for the best checkpoint and the training state")
    command.add_argument("--resume", action="store_true", help="continue from the training state in --output")
    command.add_argument("--overwrite", action="store_true", help="train into a non-empty --output, replacing it")
    add_settings(command)
    command.set_defaults(run=run)


# The settings' flags that take one value: flag, the TrainSettings field that holds its default, type, help.
VALUE_FLAGS = [
    ("--batch-size", "batch_size", int, "sentences per batch"),
    ("--lr", "learning_rate", float, "encoder learning rate"),
    ("--head-lr", "head_learning_rate", float, "learning rate of the pointer heads"),
    ("--warmup", "warmup", float, "fraction of steps spent warming up (at most a third of an epoch)"),
    ("--ema-decay", "ema_decay", float, "weight of the past in the averaged weights kept"),
    ("--max-length", "max_length", int, "tokens per sentence, special tokens included"),
    ("--subject-loss-weight", "subject_loss_weight", float, "weight of the subject loss beside the object loss"),
    ("--mask-rate", "mask_rate", float, "share of training tokens hidden behind the mask token (0: none)"),
    ("--subject-distance", "subject_distance", int,
     "the object heads see each token's distance to the subject, up to this many tokens (0: not at all)"),
    ("--sentence-distance", "sentence_distance", int,
     "the object heads see how many sentences lie between each token and the subject, up to this many (0: not at all)"),
    ("--accumulate", "accumulate", int, "batches per optimizer step"),
    ("--max-batch-tokens", "max_batch_tokens", int,
     "padded tokens per forward pass: a larger batch runs in slices (same gradients, less memory)"),
    ("--seed", "seed", int, "random seed"),
    ("--device", "device", str, "auto, cpu, cuda or cuda:N"),
]  # fmt: skip


def add_settings(command: argparse.ArgumentParser) -> None:
    """The flags of ``TrainSettings``, with its defaults."""
    defaults = TrainSettings()
    command.add_argument(
        "--epochs",
        type=epochs_value,
        default="auto",
        help="passes over the training data; auto: up to 20, fewer for large data and encoders (see README)",
    )
    for flag, field, kind, help in VALUE_FLAGS:
        command.add_argument(flag, type=kind, default=getattr(defaults, field), help=help)
    command.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=defaults.freeze_embeddings,
        help="keep the encoder's word embeddings as pretrained",
    )
    command.add_argument(
        "--any-relation",
        action=argparse.BooleanOptionalAction,
        default=defaults.any_relation,
        help="with --init-from a start that has the any-object relation '*' (benchmarks/starts.py): train it "
        "beside your relations as a helper (not saved)",
    )
    command.add_argument(
        "--negative-subjects",
        action="store_true",
        help="also train the object heads on gold objects that are no subject, to find nothing for them",
    )
    command.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=defaults.precision,
        help="autocast type of the forward pass; auto: bf16 on a GPU, and on a CPU where it measured faster",
    )
    command.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="keep these pointer thresholds, subjects' then objects' if four (default: the best on --dev)",
    )


def epochs_value(text: str) -> int | None:
    """``--epochs``: a whole number, or ``auto`` (None: training.settings.auto_epochs decides)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a whole number nor 'auto'") from None


def check_numbers(args: argparse.Namespace) -> None:
    if args.epochs is not None and args.epochs < 1:
        raise CliError(f"--epochs {args.epochs}: train for at least 1 epoch")
    if not args.subject_loss_weight > 0:  # also NaN
        raise CliError(f"--subject-loss-weight {args.subject_loss_weight}: give a positive number")
    if not 0 <= args.mask_rate < 1:  # also NaN
        raise CliError(f"--mask-rate {args.mask_rate}: give a share from 0 up to, not including, 1")
    if args.max_batch_tokens < 1:
        raise CliError(f"--max-batch-tokens {args.max_batch_tokens}: give a positive number of tokens")
    parse_thresholds(args.thresholds)


def check_output(args: argparse.Namespace) -> Path:
    try:
        output = output_folder(args.output)
    except FileError as error:
        raise CliError(str(error)) from None
    if not (args.overwrite or args.resume) and output.is_dir() and any(output.iterdir()):
        raise CliError(
            f"--output '{args.output}' is not empty; pass --overwrite to replace what is there, or --resume to continue"
        )
    if args.resume and not (output / STATE_FILE).is_file():
        raise CliError(f"--resume: '{args.output}' holds no training state ({STATE_FILE}); train without --resume")
    return output


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


def check_encoder_loads(name: str, init_from: str | None) -> None:
    """Read the encoder's config before any training work: a broken or unknown one ends here in one line, and
    so does a starting point (``--init-from``) trained from another encoder."""
    from transformers import AutoConfig

    from triplex.training.start import StartError, check_start

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError) as error:
        raise CliError(f"cannot load encoder '{name}': {str(error).strip().splitlines()[0]}") from None
    try:
        if init_from:
            check_start(Path(init_from), config)
    except StartError as error:
        raise CliError(str(error)) from None


def settings_of(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        freeze_embeddings=args.freeze_embeddings,
        negative_subjects=args.negative_subjects,
        any_relation=args.any_relation,
        subject_loss_weight=args.subject_loss_weight,
        mask_rate=args.mask_rate,
        subject_distance=args.subject_distance,
        sentence_distance=args.sentence_distance,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        accumulate=args.accumulate,
        max_batch_tokens=args.max_batch_tokens,
        resume=args.resume,
        thresholds=args.thresholds,
        precision=args.precision,
        init_from=args.init_from,
    )


def choose_encoder(args: argparse.Namespace) -> str:
    """``--encoder``, or the one the ``--init-from`` model was trained from."""
    if args.encoder:
        return args.encoder
    if not args.init_from:
        raise CliError("give --encoder (a Hugging Face model id or an encoder folder), or --init-from MODEL")
    folder = Path(args.init_from)
    if not (folder / CONFIG_FILE).is_file():
        raise CliError(f"--init-from '{args.init_from}' is not a trained model folder (no {CONFIG_FILE})")
    encoder = ExtractorConfig.load(folder).training.get("encoder")
    if not encoder or (looks_local(encoder) and not Path(encoder).is_dir()):
        raise CliError(f"--init-from '{args.init_from}' does not say which encoder it used here; give --encoder")
    return encoder


def run(args: argparse.Namespace, console: Console) -> None:
    check_numbers(args)
    output = check_output(args)
    args.encoder = choose_encoder(args)
    check_encoder(args.encoder)
    train_examples, raw_triples, format, summary = read_dataset(args.train, args.format)
    dev_examples, _, _, dev_summary = read_dataset(args.dev, args.format or format)
    console.log(f"read {args.train} as {format}: {summary.line()}")
    console.log(f"read {args.dev}: {dev_summary.line()}")
    schema = Path(args.schema) if args.schema else find_schema(Path(args.train))
    derived = derive_schema(raw_triples)
    relations = with_types_from(read_schema(schema), derived) if schema else derived
    console.log(f"schema: {len(relations)} relations from {schema or 'the training data'}")
    check_schema(relations, train_examples, Path(args.train))
    check_schema(relations, dev_examples, Path(args.dev))
    if not any(example.triples for example in train_examples):
        raise CliError(f"{args.train}: no triple could be placed in its text; nothing to learn from")
    try:
        check_device(args.device)
    except ValueError as error:
        raise CliError(str(error)) from None
    check_encoder_loads(args.encoder, args.init_from)

    from triplex.training.train import ResumeError, train

    roles = (("train", args.train), ("dev", args.dev), ("schema", schema))
    files = [file for file in (fingerprint(role, path) for role, path in roles) if file]
    try:
        best = train(
            train_examples, dev_examples, relations, args.encoder, output, settings_of(args), summary,
            console.log, files, console.bar,
        )  # fmt: skip
    except OSError as error:  # transformers' way of saying the weights cannot be loaded
        raise CliError(f"cannot load encoder '{args.encoder}': {str(error).splitlines()[0]}") from None
    except ResumeError as error:
        raise CliError(str(error)) from None
    figures = f"best dev F1 {best['f1']:.4f} (partial {best['partial_f1']:.4f}) at epoch {best['epoch']}"
    if "f1_at_chosen_thresholds" in best:
        figures += f", {best['f1_at_chosen_thresholds']:.4f} at the thresholds chosen on dev"
    console.log(f"{figures}; saved in {args.output}")
    if not best["f1"] and not best.get("f1_at_chosen_thresholds") and any(example.triples for example in dev_examples):
        console.log(
            "warning: the model finds no triple of --dev at any threshold tried. Train longer, or, if the loss "
            "stopped falling early, with a lower --lr (such as 1e-4: on small or long-text data 2e-4 can collapse)"
        )
