"""``python -m triplex.service``: the engine process, then the API in uvicorn; settings from ``TRIPLEX_*`` and flags.

This is what the container runs; it imports neither PyTorch nor the training code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn

from ..model.runtime import ExportError, check_export_folder
from ..model.schema import THRESHOLDS_METAVAR
from .logs import configure
from .metrics import use_folder
from .one_write import OneWriteProtocol
from .settings import ServiceSettings, SettingsError
from .supervisor import EngineStartError, EngineSupervisor
from .workers import run_workers


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triplex serve", description="Serve an export folder over HTTP.")
    parser.add_argument("--model", help="export folder (TRIPLEX_MODEL_DIR)")
    parser.add_argument("--host", help="address to listen on (TRIPLEX_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (TRIPLEX_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="HTTP front-end processes (TRIPLEX_WORKERS, default 1)")
    parser.add_argument("--provider", help="auto, cuda or cpu (TRIPLEX_PROVIDER)")
    parser.add_argument(
        "--thresholds",
        metavar=THRESHOLDS_METAVAR,
        help="pointer thresholds instead of the model's own (TRIPLEX_THRESHOLDS)",
    )
    ray = parser.add_argument_group('replicas on Ray Serve (pip install "triplex[ray]")')
    ray.add_argument("--ray", action="store_true", help="deploy replicas of this service on Ray Serve")
    ray.add_argument("--address", help="Ray cluster: auto (the one on this machine) or HOST:PORT; default: start one")
    ray.add_argument("--replicas", default="1", help="N, or auto: autoscale on requests in flight")
    ray.add_argument("--max-replicas", type=int, default=0, help="with auto: at most this many (0: room now)")
    ray.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica")
    ray.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (its engine's threads)")
    ray.add_argument("--write-config", metavar="PATH", help="write the Serve config file (serve deploy PATH) and exit")
    return parser


def serve(argv: list[str] | None = None) -> int:
    args = serve_parser().parse_args(argv)
    # flags win over the environment; worker processes read the environment
    for name in ("model", "host", "port", "workers", "provider", "thresholds"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"TRIPLEX_{'MODEL_DIR' if name == 'model' else name.upper()}"] = str(value)
    try:
        settings = ServiceSettings.read()
        check_export_folder(Path(settings.model_dir))
    except (SettingsError, ExportError) as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
    if args.ray or args.write_config:
        return serve_on_ray(args, settings)
    logging = configure(settings.log_format)
    # One engine process owns the accelerator and forms the batches; the uvicorn workers feed it.
    # Every process writes its metrics into one folder, which /metrics sums.
    work = tempfile.mkdtemp(prefix="triplex-")
    os.environ["TRIPLEX_ENGINE_SOCKET"] = str(Path(work) / "engine.sock")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(work) / "metrics")
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
    use_folder()
    supervisor = EngineSupervisor(os.environ["TRIPLEX_ENGINE_SOCKET"])
    try:
        supervisor.start()
    except EngineStartError as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 2
    options = dict(
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
        log_level="info",
        log_config=logging,
        access_log=settings.access_log,
        http=OneWriteProtocol,
    )
    try:
        if settings.workers > 1:
            run_workers(uvicorn.Config("triplex.service.app:create_app", **options))
        else:
            uvicorn.run("triplex.service.app:create_app", **options)
    finally:  # the workers have drained through the engine; now it can go
        supervisor.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def serve_on_ray(args: argparse.Namespace, settings: ServiceSettings) -> int:
    """``--ray``: the same app in replicas on Ray Serve; settings travel as the application's arguments."""
    try:
        from . import ray_serve
    except ImportError:
        print('triplex: error: --ray needs Ray: pip install "triplex[ray]"', file=sys.stderr)
        return 2
    if args.replicas != "auto" and not (args.replicas.isdigit() and int(args.replicas) >= 1):
        print(f"triplex: error: --replicas {args.replicas}: give a whole number >= 1 or auto", file=sys.stderr)
        return 2
    chosen = settings.model_dump(exclude_defaults=True, exclude={"host", "port", "workers", "engine_socket", "api_key"})
    chosen["model_dir"] = str(Path(settings.model_dir).resolve())
    application = {
        "replicas": args.replicas,
        **({"max_replicas": args.max_replicas} if args.max_replicas else {}),
        "gpus_per_replica": args.gpus_per_replica,
        "cpus_per_replica": args.cpus_per_replica,
        **{name: str(value) for name, value in chosen.items()},
    }
    if args.write_config:  # the API key stays out of the file: give replicas TRIPLEX_API_KEY in their environment
        ray_serve.write_config(Path(args.write_config), application, settings.host, settings.port)
        print(f"triplex: wrote {args.write_config}; deploy it with 'serve deploy {args.write_config}'")
        return 0
    if settings.api_key is not None:
        application["api_key"] = settings.api_key.get_secret_value()
    try:
        ray_serve.run(application, settings.host, settings.port, args.address)
    except ray_serve.ClusterError as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(serve())
