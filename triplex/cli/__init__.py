"""The ``triplex`` command line: one module per subcommand (train, evaluate, extract, export); ``serve``
is the service's own (``service.__main__``), which needs no training code.

Heavy imports (torch, transformers) happen inside the commands so that ``--help`` and input errors
answer at once.
"""

from __future__ import annotations

import argparse
import sys

from triplex import ModelError, __version__
from triplex.cli import evaluate, export, extract, label_studio, train
from triplex.cli.common import CliError, Console, HelpFormatter
from triplex.files import FileError
from triplex.training.data import FORMATS, DataError


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
        return commands.add_parser(name, help=help, parents=[common], formatter_class=HelpFormatter)

    train.add_parser(command("train", "train an extractor on labelled data"), formats)
    evaluate.add_parser(command("evaluate", "precision, recall and F1 of a model on labelled data"), formats)
    extract.add_parser(command("extract", "print the triples of a text, or of a file of texts, as JSON"))
    export.add_parser(command("export", "export a trained model to ONNX, checked against PyTorch"))
    label_studio.add_parser(command("label-studio", "serve a model as a Label Studio ML backend, or pull annotations"))
    commands.add_parser("serve", help="serve an export folder over HTTP (see 'triplex serve --help')")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service parses its own flags and needs no training code
        from triplex.service.__main__ import serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.run(args, Console(args.quiet))
    except (CliError, DataError, ModelError, FileError) as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("triplex: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
