"""``triplex extract``: the triples of a text, of a JSON lines stream, or of files into a results folder."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from triplex.cli.common import CliError, Console, load_model
from triplex.files import FileError, json_line, output_file
from triplex.model.extractor import Extractor
from triplex.model.runtime import is_export
from triplex.model.schema import THRESHOLDS_METAVAR
from triplex.model.tokenize import lone_surrogate

STREAM_CHUNK = 1024  # texts handed to the extractor at a time by extract --input


def add_parser(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", required=True, help="export folder or trained model folder")
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text")
    source.add_argument(
        "--input", help='JSON lines of {"text": ...} objects (other fields are kept) or strings; - for standard input'
    )
    command.add_argument(
        "--output",
        default="-",
        help="JSON lines out, - for standard output; a folder (an existing one, or a path ending in /) gets "
        "triples/, errors.jsonl and summary.json, as with --ray",
    )
    command.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    command.add_argument("--device", default="auto", help="auto, cpu or cuda")
    command.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="pointer thresholds instead of the model's own; four: subjects' pair, then objects'",
    )
    loop = command.add_argument_group("labelling with Label Studio (--input)")
    loop.add_argument(
        "--format",
        choices=["jsonl", "labelstudio"],
        default="jsonl",
        help="labelstudio: one JSON file of tasks with triplex's predictions, for Label Studio's import",
    )
    loop.add_argument(
        "--label-config",
        help="the project's labelling config (XML file) that --format labelstudio names its results after; "
        "default: 'triplex label-studio config' for this model",
    )
    loop.add_argument(
        "--select",
        type=int,
        metavar="N",
        help="write only the N texts the model is least sure of, least sure first (the ones to label next)",
    )
    bulk = command.add_argument_group("results folder (--input: a file, a folder or a glob of .jsonl/.parquet)")
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
    command.set_defaults(run=run)


def is_bulk(args: argparse.Namespace) -> bool:
    """Whether ``extract`` writes a results folder (``triplex.jobs``) rather than one stream of JSON lines."""
    folder = args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()
    return bool(args.ray or args.output_format or folder)


def run_bulk(args: argparse.Namespace, console: Console) -> None:
    try:
        from triplex.jobs.bulk import (
            ENGINE_BATCHES_PER_CALL,
            BulkError,
            ExtractRecords,
            count_records,
            input_files,
            run_local,
        )
        from triplex.jobs.bulk import output_format as bulk_format
    except ImportError:
        raise CliError('a results folder needs pyarrow: pip install "triplex[bulk]"') from None
    if args.text is not None or args.input == "-":
        raise CliError("a results folder is written from --input files; give a file, a folder or a glob")
    if args.format != "jsonl" or args.select is not None:
        raise CliError("--format labelstudio and --select write one file: give --output FILE.json, not a folder")
    if not is_export(args.model):
        raise CliError(f"'{args.model}' is not an export folder; bulk extraction runs exports ('triplex export')")
    output = Path(args.output)
    try:
        files = input_files(args.input)
        fmt = bulk_format(output, args.output_format)
        if args.ray:
            summary = run_ray_job(files, output, fmt, args)
        else:
            extract = ExtractRecords(
                args.model, args.device, args.threads, args.batch_size, args.thresholds, streams=args.streams
            )
            with console.bar(count_records(files), "extract", "text") as bar:
                texts = args.batch_size * ENGINE_BATCHES_PER_CALL
                summary = run_local(files, output, fmt, extract, args.max_chars, texts, bar.update)
    except BulkError as error:
        raise CliError(str(error)) from None
    console.log(f"{summary.line()}; results in {output / 'triples'}, errors in {output / 'errors.jsonl'}")


def run_ray_job(files: list[str], output: Path, fmt: str, args: argparse.Namespace):
    try:
        from triplex.jobs.ray_bulk import run_ray
        from triplex.service.ray_cluster import ClusterError
    except ImportError:
        raise CliError('--ray needs Ray: pip install "triplex[ray]"') from None
    try:
        return run_ray(files, output, fmt, args)
    except ClusterError as error:
        raise CliError(str(error)) from None


def read_records(source: str) -> list[dict]:
    """Records from JSON lines (a file, or standard input for ``-``): ``{"text": ..., ...}`` objects, whose
    other fields are kept, or bare JSON strings."""
    if source != "-" and not Path(source).is_file():
        raise CliError(f"{source}: no such file; check the path")
    name = "standard input" if source == "-" else source
    records = []
    with contextlib.nullcontext(sys.stdin.buffer) if source == "-" else open(source, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not (raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw).strip():
                continue
            try:
                item = json_line(raw, number)
            except FileError as error:
                advice = "; save the file as UTF-8" if str(error).startswith("not UTF-8") else ""
                raise CliError(f"{name}:{number}: {error}{advice}") from None
            record = item if isinstance(item, dict) else {"text": item}
            if not isinstance(record.get("text"), str):
                raise CliError(f'{name}:{number}: expected a JSON string or an object with a "text" string')
            problem = lone_surrogate(record["text"])
            if problem:
                raise CliError(f"{name}:{number}: the text {problem}")
            records.append(record)
    return records


def run(args: argparse.Namespace, console: Console) -> None:
    if is_bulk(args):
        return run_bulk(args, console)
    try:
        output_file(args.output)
    except FileError as error:
        raise CliError(str(error)) from None
    if args.text is not None:
        problem = lone_surrogate(args.text)
        if problem:
            raise CliError(f"--text {problem}")
        records = [{"text": args.text}]
    else:
        records = read_records(args.input)
        if not records:
            console.log(f"warning: {args.input} holds no texts; nothing to extract")
    extractor = load_model(args.model, args.device, args.batch_size, args.thresholds)
    if args.format == "labelstudio" or args.select is not None:
        return write_for_labelling(records, extractor, args, console)
    if args.text is not None:
        found = extractor.extract_all([args.text])[0]
        print(json.dumps(records[0] | found.to_dict(), ensure_ascii=False, indent=2))
        return
    to_file = args.output not in (None, "-")
    target = open(args.output, "w", encoding="utf-8") if to_file else contextlib.nullcontext(sys.stdout)  # noqa: SIM115
    with target as output, console.bar(len(records), "extract", "text", enabled=to_file) as bar:
        for begin in range(0, len(records), STREAM_CHUNK):
            chunk = records[begin : begin + STREAM_CHUNK]
            for record, found in zip(chunk, extractor.extract_all([record["text"] for record in chunk])):
                output.write(json.dumps(record | found.to_dict(), ensure_ascii=False) + "\n")
            bar.update(len(chunk))


def write_for_labelling(records: list[dict], extractor: Extractor, args: argparse.Namespace, console: Console) -> None:
    """``--format labelstudio`` and ``--select``: every text's prediction and confidence at once, then the
    least confident first when selecting."""
    from triplex.model.label_studio import LabelConfig, LabelConfigError, candidates_of, label_config_xml, prediction

    if args.select is not None and args.select < 1:
        raise CliError(f"--select {args.select}: give a positive number of texts")
    relations = extractor.config.relations
    try:
        xml = Path(args.label_config).read_text(encoding="utf-8") if args.label_config else label_config_xml(relations)
        config = LabelConfig.for_model(xml, relations)
    except (OSError, UnicodeDecodeError, LabelConfigError) as error:
        raise CliError(f"--label-config {args.label_config}: {error}") from None
    texts = [record["text"] for record in records]
    with console.bar(2 * len(texts), "extract", "text", enabled=args.output not in (None, "-")) as bar:
        found = extractor.extract_all(texts)
        bar.update(len(texts))
        near = candidates_of(extractor).extract(texts)
        bar.update(len(texts))
    version = Path(args.model).name
    predictions = [prediction(f.triples, n, config, version) for f, n in zip(found, near)]
    order = range(len(records))
    if args.select is not None:
        order = sorted(order, key=lambda i: predictions[i]["score"])[: args.select]
    if args.format == "labelstudio":
        tasks = [{"data": records[i] | {config.text_field: records[i]["text"]}, "predictions": [predictions[i]]}
                 for i in order]  # fmt: skip
        text = json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"
    else:
        text = "".join(
            json.dumps(records[i] | found[i].to_dict() | {"confidence": predictions[i]["score"]}, ensure_ascii=False)
            + "\n"
            for i in order
        )
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        console.log(f"{len(order)} of {len(records)} texts written to {args.output}")
