"""What the subcommands share: one-line errors, the console (messages and progress), loading a model."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from tqdm import tqdm

import triplex
from triplex.cli.progress import PlainProgress, progress
from triplex.model.extractor import Extractor
from triplex.model.schema import Thresholds


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, unless the help already states it or there is none to state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or "") or action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class CliError(Exception):
    """A problem with the command's input; printed as one line."""


@dataclass(frozen=True)
class Console:
    """Messages and progress bars on standard error; with ``quiet``, none (results and errors still print)."""

    quiet: bool = False

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str, unit: str, leave: bool = True, enabled: bool = True) -> tqdm | PlainProgress:
        return progress(total, desc, unit, enabled and not self.quiet, leave)


def parse_thresholds(text: str | None, flag: str = "--thresholds") -> Thresholds | None:
    try:
        return Thresholds.parse(text) if text else None
    except ValueError as error:
        raise CliError(f"{flag}: {error}") from None


def load_model(path: str, device: str, batch_size: int = 32, thresholds: str | None = None) -> Extractor:
    """``triplex.load``: an export folder (ONNX Runtime) or a checkpoint (PyTorch), errors as one line."""
    try:
        return triplex.load(path, provider=device, batch_size=batch_size, thresholds=thresholds)
    except (triplex.ModelError, ValueError) as error:
        raise CliError(str(error)) from None
