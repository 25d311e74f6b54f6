"""``triplex export``: a trained model folder to two ONNX graphs, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from triplex.cli.common import CliError, Console
from triplex.files import FileError, output_folder
from triplex.model.runtime import is_export
from triplex.model.schema import CONFIG_FILE, ExtractorConfig
from triplex.training.data import read_dataset

PRECISIONS = ("fp32", "fp16", "int8")


def add_parser(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", required=True, help="trained model folder")
    command.add_argument("--output", required=True, help="export folder to write")
    command.add_argument(
        "--precision", default="fp32", help="fp32 (reference), fp16 (GPU) or int8 (CPU, calibrated on real sentences)"
    )
    command.add_argument(
        "--check-data",
        help="a data file (any training format) whose sentences judge fp16/int8 by their triples against PyTorch's",
    )
    command.add_argument(
        "--calibration-data",
        help="int8: a data file whose sentences (up to 512) set the activation scales; default: the model's own "
        "dev data, else its training data, as its model card names them",
    )
    command.set_defaults(run=run)


def calibration_texts(args: argparse.Namespace) -> list[str] | None:
    """The sentences int8 calibrates on: --calibration-data, else the files the model was trained with."""
    if args.precision != "int8":
        return None
    if args.calibration_data:
        return [example.text for example in read_dataset(args.calibration_data)[0]]
    training = ExtractorConfig.load(Path(args.model)).training or {}
    files = {file.get("role"): file.get("path") for file in training.get("files", [])}
    for role in ("dev", "train"):
        if files.get(role) and Path(files[role]).is_file():
            return [example.text for example in read_dataset(files[role])[0]]
    raise CliError("int8 sets its activation scales on real sentences: give --calibration-data FILE (the "
                   "model's own training and dev files are not where its model card says)")  # fmt: skip


def check_model_dir(path: str) -> Path:
    directory = Path(path)
    if is_export(directory):
        raise CliError(f"'{path}' is an export folder; export from the trained model folder that 'triplex train' wrote")
    if not (directory / CONFIG_FILE).is_file():
        raise CliError(f"'{path}' is not a trained model folder (no {CONFIG_FILE}); train one with 'triplex train'")
    return directory


def run(args: argparse.Namespace, console: Console) -> None:
    check_model_dir(args.model)
    try:
        output = output_folder(args.output)
    except FileError as error:
        raise CliError(str(error)) from None
    if args.precision not in PRECISIONS:
        raise CliError(f"--precision {args.precision}: use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")
    check_texts = [example.text for example in read_dataset(args.check_data)[0]] if args.check_data else None
    from triplex.training.export import export

    try:
        info = export(Path(args.model), output, args.precision, console.log, check_texts, calibration_texts(args))
    except ValueError as error:
        raise CliError(str(error)) from None
    console.log(f"exported {args.precision} to {args.output} (fp32 parity {info.fp32_max_difference:.1e})")
