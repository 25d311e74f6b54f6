"""Replicas on Ray Serve (``triplex serve --ray``; needs ``pip install "triplex[ray]"``).

Every replica runs the app of ``triplex serve`` (same routes, errors and OpenAPI) with its own engine process
and batcher, and answers with an ``X-Triplex-Replica`` header naming itself; Serve checks each replica's
health through the engine's readiness. The same application runs from a Serve config file::

    serve deploy serve.yaml      # written by: triplex serve --ray --model EXPORT --write-config serve.yaml

whose application imports ``triplex.service.ray_serve:build`` with the arguments of ``build``.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import ray
import yaml
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .app import create_app
from .ray_cluster import ClusterError, connect
from .settings import ServiceSettings

__all__ = ["ClusterError", "build", "run", "write_config"]
NAME = "triplex"
# The batcher wants many requests in flight; Serve's default of 5 per replica would starve it.
MAX_ONGOING_REQUESTS = 256
TARGET_ONGOING_REQUESTS = 32  # with --replicas auto: a replica is added when each has more in flight


class NameReplica:
    """ASGI middleware: every response says which replica answered it."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app, self.header = app, (b"x-triplex-replica", replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send if scope["type"] != "http" else named)


@serve.deployment(name=NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS, health_check_period_s=5)
@serve.ingress()
class Replica:
    def __init__(self, environment: dict[str, str]) -> None:
        os.environ.update(environment)  # the TRIPLEX_* settings, for this process and its engine process
        self.settings = ServiceSettings.read()

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self.settings)
        app.add_middleware(NameReplica, replica=serve.get_replica_context().replica_id.unique_id)
        return app

    def check_health(self) -> None:
        if not self.app.state.service.ready:
            raise RuntimeError("the engine process is not ready")


def build(args: dict) -> Application:
    """The Serve application. ``args``: ``replicas`` (N or auto), ``max_replicas`` (auto's ceiling; default:
    what the cluster has room for now), ``gpus_per_replica``, ``cpus_per_replica``, and any service setting
    by its name (``model_dir``, ``max_batch_size``, ...), as in ``TRIPLEX_*``."""
    args = dict(args)
    replicas = str(args.pop("replicas", "1"))
    gpus = float(args.pop("gpus_per_replica", 0))
    cpus = float(args.pop("cpus_per_replica", 1))
    ceiling = int(args.pop("max_replicas", 0)) or room_for(cpus, gpus)
    unknown = sorted(set(args) - set(ServiceSettings.model_fields))
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)}; see build's docstring and the settings table")
    settings = ServiceSettings.read(**args)
    environment = settings.environment() | {"TRIPLEX_THREADS": str(settings.threads or max(1, int(cpus)))}
    if gpus and settings.provider == "auto":
        environment["TRIPLEX_PROVIDER"] = "cuda"
    scaling = (
        {
            "autoscaling_config": {
                "min_replicas": 1,
                "max_replicas": ceiling,
                "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
            }
        }
        if replicas == "auto"
        else {"num_replicas": int(replicas)}
    )
    return Replica.options(ray_actor_options={"num_cpus": cpus, "num_gpus": gpus}, **scaling).bind(environment)


def room_for(cpus: float, gpus: float) -> int:
    """As many replicas as the cluster has room for (GPUs, else CPUs); at least 1."""
    resources = ray.cluster_resources() if ray.is_initialized() else {}
    if gpus:
        return max(1, int(resources.get("GPU", 1) // gpus))
    return max(1, int(resources.get("CPU", 1) // cpus))


def serve_config(args: dict, host: str, port: int) -> dict:
    """The Serve config file of this application (for ``serve deploy`` and KubeRay's RayService)."""
    return {
        "http_options": {"host": host, "port": port},
        "applications": [
            {"name": NAME, "route_prefix": "/", "import_path": f"{__name__}:build", "args": args},
        ],
    }


def write_config(path: Path, args: dict, host: str, port: int) -> None:
    path.write_text(yaml.safe_dump(serve_config(args, host, port), sort_keys=False))


def run(args: dict, host: str, port: int, address: str | None) -> None:
    """Deploy on the cluster at ``address`` (None: start one here) and serve until SIGINT or SIGTERM."""
    connect(address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build(args), name=NAME, route_prefix="/")
    print(f"triplex: serving on http://{host}:{port} with Ray Serve (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
