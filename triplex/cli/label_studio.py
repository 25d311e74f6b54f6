"""``triplex label-studio``: serve a model as a Label Studio ML backend, or pull a project's annotations."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from triplex.cli.common import CliError, Console, HelpFormatter


def add_parser(command: argparse.ArgumentParser) -> None:
    actions = command.add_subparsers(dest="action", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve a model as a Label Studio ML backend (connect it in the project's Model settings)",
        formatter_class=HelpFormatter,
    )
    serve.add_argument(
        "--model", required=True, help="trained model folder (to train again), or an export folder (predict only)"
    )
    serve.add_argument(
        "--workdir", default="label-studio-models", help="folder for exports, trainings and the current version"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=9090, help="port to listen on")
    serve.add_argument(
        "--train-args",
        default="",
        help="flags for each 'triplex train' on the project's annotations, such as \"--epochs 8 --device cuda\"",
    )
    serve.add_argument(
        "--label-studio-url",
        help="Label Studio's address for fetching annotations; unset: LABEL_STUDIO_URL, else the one it sends",
    )
    serve.set_defaults(run=run_serve)
    config = actions.add_parser("config", help="print a labelling config (XML) for a project this model can serve")
    config.add_argument("--model", required=True, help="export folder or trained model folder")
    config.set_defaults(run=run_config)
    pull = actions.add_parser(
        "pull",
        help="write a project's annotated tasks to a file that 'triplex train --format labelstudio' reads",
        formatter_class=HelpFormatter,
    )
    pull.add_argument(
        "--url", default=os.environ.get("LABEL_STUDIO_URL"), help="Label Studio's address (LABEL_STUDIO_URL)"
    )
    pull.add_argument("--project", type=int, required=True, help="project id")
    pull.add_argument("--output", required=True, help="JSON file to write")
    pull.set_defaults(run=run_pull)


def run_serve(args: argparse.Namespace, console: Console) -> None:
    import uvicorn

    from triplex.service.label_studio import Backend, LabelStudioError, create_backend

    key = os.environ.get("TRIPLEX_API_KEY") or None
    try:
        train_args = tuple(shlex.split(args.train_args))
        backend = Backend(Path(args.model), Path(args.workdir), train_args, args.label_studio_url)
    except LabelStudioError as error:
        raise CliError(str(error)) from None
    console.log(f"Label Studio ML backend on http://{args.host}:{args.port}: model version {backend.version.name}")
    uvicorn.run(create_backend(backend, key), host=args.host, port=args.port, log_level="info")


def run_pull(args: argparse.Namespace, console: Console) -> None:
    from triplex.service.label_studio import LabelStudioError, fetch_annotations

    token = os.environ.get("LABEL_STUDIO_API_KEY")
    if not args.url or not token:
        raise CliError("give --url (or LABEL_STUDIO_URL) and the token in LABEL_STUDIO_API_KEY")
    try:
        tasks = [task for task in fetch_annotations(args.url, token, args.project) if task.get("annotations")]
    except LabelStudioError as error:
        raise CliError(str(error)) from None
    Path(args.output).write_text(json.dumps(tasks, ensure_ascii=False))
    console.log(f"{len(tasks)} annotated tasks of project {args.project} written to {args.output}")


def run_config(args: argparse.Namespace, console: Console) -> None:
    from triplex.model.label_studio import label_config_xml
    from triplex.model.schema import CONFIG_FILE, ExtractorConfig

    if not (Path(args.model) / CONFIG_FILE).is_file():
        raise CliError(f"'{args.model}' is neither an export folder nor a trained model folder (no {CONFIG_FILE})")
    print(label_config_xml(ExtractorConfig.load(Path(args.model)).relations), end="")
