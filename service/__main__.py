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

from triplex.model.engine import ExportError, check_export_folder
from triplex.service.logs import configure
from triplex.service.metrics import use_folder
from triplex.service.settings import Settings, SettingsError
from triplex.service.supervisor import EngineStartError, EngineSupervisor


def serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triplex serve", description="Serve an export folder over HTTP.")
    parser.add_argument("--model", help="export folder (TRIPLEX_MODEL_DIR)")
    parser.add_argument("--host", help="address to listen on (TRIPLEX_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (TRIPLEX_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="HTTP front-end processes (TRIPLEX_WORKERS, default 1)")
    parser.add_argument("--provider", help="auto, cuda or cpu (TRIPLEX_PROVIDER)")
    parser.add_argument(
        "--thresholds", metavar="START,END", help="pointer thresholds instead of the model's own (TRIPLEX_THRESHOLDS)"
    )
    args = parser.parse_args(argv)
    # flags win over the environment; worker processes read the environment
    for name in ("model", "host", "port", "workers", "provider", "thresholds"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"TRIPLEX_{'MODEL_DIR' if name == 'model' else name.upper()}"] = str(value)
    try:
        settings = Settings.read()
        check_export_folder(Path(settings.model_dir))
    except (SettingsError, ExportError) as error:
        print(f"triplex: error: {error}", file=sys.stderr)
        return 2
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
    try:
        uvicorn.run(
            "triplex.service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
            log_level="info",
            log_config=logging,
            access_log=settings.access_log,
        )
    finally:  # the workers have drained through the engine; now it can go
        supervisor.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve())
