"""The FastAPI application: thin routes over the engine and the batcher."""

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.pipeline import Extraction
from service.api_models import (
    ErrorResponse,
    ExtractRequest,
    ExtractResponse,
    ModelResponse,
    RelationOut,
    SchemaResponse,
)
from service.batcher import Batcher, Closed, QueueFull
from service.engine import Engine
from service.metrics import Metrics
from service.settings import Settings

DISCONNECT_POLL_S = 0.05
ERRORS = {status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 503, 504)}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class CountRequests:
    """Requests by route and status, and their latency. A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task group per request, measurable on a loaded CPU."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


@dataclass
class Service:
    settings: Settings
    metrics: Metrics
    engine: Engine | None = None
    batcher: Batcher | None = None
    ready: bool = False


def warm_up(engine: Engine, settings: Settings, batch_size: int) -> None:
    """Run the engine on every shape bucket it will meet: sequence lengths and batch sizes in powers of
    two up to the limits, so the first requests do not pay for kernel selection and memory arenas."""
    for tokens in powers_of_two(8, engine.config.max_length):
        windows = engine.extractor.windows([" ".join(["the"] * tokens)])
        for batch in powers_of_two(1, max(1, min(batch_size, settings.max_batch_tokens // tokens))):
            engine.extractor.extract_windows(windows * batch)


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low ... below high, then high."""
    values = [low]
    while values[-1] * 2 < high:
        values.append(values[-1] * 2)
    return values + [high] if high > low else values


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    service = Service(settings, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await asyncio.to_thread(Engine, settings.model_dir, settings.provider, settings.threads)
        batch_size = engine.extractor.batch_size = settings.batch_size(engine.on_gpu)
        await asyncio.to_thread(warm_up, engine, settings, batch_size)
        service.engine = engine
        service.batcher = Batcher(
            engine.extractor.extract_windows,
            service.metrics,
            batch_size,
            settings.max_batch_tokens,
            settings.max_wait_ms / 1000,
            settings.max_queue,
        )
        service.batcher.start()
        service.ready = True
        yield
        service.ready = False
        await service.batcher.drain(settings.request_timeout_s)

    app = FastAPI(
        title="triplex",
        version="0.1.0",
        description="Relational triple extraction: POST text, get (subject, predicate, object) triples.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(422, "invalid_request", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return error_response(
            500, "internal_error", f"unexpected {type(error).__name__}; the request was not completed"
        )

    app.add_middleware(CountRequests, metrics=service.metrics)

    async def authorized(request: Request) -> None:  # async: a sync dependency costs a thread hop
        key = settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {key.get_secret_value()}".encode()):
            raise ApiError(401, "unauthorized", "missing or wrong API key", {"WWW-Authenticate": "Bearer"})

    async def running() -> Service:
        if not service.ready or service.batcher is None:
            raise ApiError(503, "not_ready", "the model is still loading; retry shortly", {"Retry-After": "1"})
        return service

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], responses=ERRORS)

    @v1.post("/extract", response_model=ExtractResponse, response_model_exclude_none=True)
    async def extract(body: ExtractRequest, request: Request, current: Annotated[Service, Depends(running)]) -> dict:
        texts = body.all_texts
        if len(texts) > settings.max_texts:
            raise ApiError(
                413, "too_many_texts", f"{len(texts)} texts in one request; the limit is {settings.max_texts}"
            )
        for index, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                raise ApiError(
                    413,
                    "text_too_long",
                    f"text {index} has {len(text)} characters; the limit is {settings.max_text_chars}",
                )
        windows = await asyncio.to_thread(current.engine.extractor.windows, texts)
        deadline = time.monotonic() + settings.request_timeout_s
        try:
            futures = current.batcher.submit(windows, deadline)
        except QueueFull:
            raise ApiError(
                429, "queue_full", "the server is at capacity; retry shortly", {"Retry-After": "1"}
            ) from None
        except Closed:
            raise ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "1"}) from None
        results = await wait_for_results(futures, request, deadline)
        # the triples' own JSON form (the CLI's too); FastAPI checks it against ExtractResponse once
        return {
            "results": [
                {"triples": [triple.to_dict() for triple in found.triples], "windows": found.windows}
                for found in results
            ]
        }

    @v1.get("/schema", response_model=SchemaResponse)
    async def schema(current: Annotated[Service, Depends(running)]) -> SchemaResponse:
        relations = current.engine.config.relations
        return SchemaResponse(
            predicates=sorted({r.predicate for r in relations}),
            entity_types=sorted({t for r in relations for t in (r.subject_type, r.object_type) if t}),
            relations=[RelationOut(**vars(r)) for r in relations],
        )

    @v1.get("/model", response_model=ModelResponse)
    async def model_info(current: Annotated[Service, Depends(running)]) -> ModelResponse:
        engine = current.engine
        export = engine.config.export
        return ModelResponse(
            name=engine.folder.resolve().name,
            precision=export.precision if export else "fp32",
            provider=engine.provider,
            max_length=engine.config.max_length,
            window_stride=engine.config.window_stride,
            fusions=export.fusions if export else {},
        )

    app.include_router(v1)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> dict[str, str]:
        await running()
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def wait_for_results(futures: list[asyncio.Future], request: Request, deadline: float) -> list[Extraction]:
    """The texts' results, or 504 at the deadline; a client that goes away has its texts dropped."""
    gathered = asyncio.gather(*futures)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiError(
                    504, "timeout", "the request waited past its deadline; retry or raise TRIPLEX_REQUEST_TIMEOUT_S"
                )
            done, _ = await asyncio.wait({gathered}, timeout=min(remaining, DISCONNECT_POLL_S))
            if done:
                return gathered.result()
            if await request.is_disconnected():
                raise ApiError(499, "client_closed", "the client closed the connection")
    except TimeoutError:
        raise ApiError(504, "timeout", "the request waited past its deadline") from None
    finally:
        if not gathered.done():
            gathered.cancel()  # cancels the texts' futures: the batcher drops them
