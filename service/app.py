"""The FastAPI application: thin routes over a front end's share of the work.

Each HTTP process parses, validates, tokenizes, turns spans into triples and serializes; the engine
process (``service.engine_process``) forms batches across all of them and runs the model.
"""

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import fastapi_offline
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triplex import __version__
from triplex.model.decode import Spans, to_triples
from triplex.model.engine import check_export_folder
from triplex.model.pipeline import merge_windows
from triplex.model.schema import ExtractorConfig
from triplex.model.tokenize import Encoded, encode_windows, load_tokenizer
from triplex.service.api_models import (
    ErrorResponse,
    ExtractRequest,
    ExtractResponse,
    ModelResponse,
    RelationOut,
    SchemaResponse,
)
from triplex.service.client import EngineClient, EngineError
from triplex.service.metrics import CONTENT_TYPE_LATEST, Metrics, exposition
from triplex.service.settings import Settings
from triplex.service.supervisor import EngineSupervisor

DISCONNECT_POLL_S = 0.05
SLICE_CHARACTERS = 8000  # a big request's texts are tokenized this much at a time
SLICE_WINDOWS = 64  # and decoded this many windows at a time
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 429, 500, 503, 504)}
STATIC = Path(__file__).parent / "static"  # the web page at /
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI and ReDoc, served from here, no CDN
LOCAL_ONLY = "default-src 'self' 'unsafe-inline' blob: data:"
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


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


class Gate:
    """What a ``/v1`` request passes before any of it is parsed: the API key first, then, for a body, a
    JSON content type and the byte limit (from Content-Length, or counted while it streams in; a body
    over the limit is refused without being read whole). A plain ASGI middleware, like ``CountRequests``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        key = settings.api_key
        self.key = key.get_secret_value().encode() if key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope["method"], headers)
        if refusal is None and scope["method"] == "POST":
            body, refusal = await self.read_body(receive)
            if body is None and refusal is None:
                return  # the client went away while sending
            receive = replay(body, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, method: str, headers: Headers) -> JSONResponse | None:
        if self.key is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), self.key):
                message = "missing or wrong API key; send the header 'Authorization: Bearer <key>'"
                return error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
        if method != "POST":
            return None
        content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            message = f"the body is {content_type or 'of no type'}; send JSON with 'Content-Type: application/json'"
            return error_response(415, "unsupported_media_type", message)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            return self.too_large()
        return None

    def too_large(self) -> JSONResponse:
        limit = self.settings.max_body_bytes
        message = f"the body is larger than {limit} bytes; send fewer texts at a time or raise TRIPLEX_MAX_BODY_BYTES"
        return error_response(413, "body_too_large", message)

    async def read_body(self, receive: Receive) -> tuple[bytes | None, JSONResponse | None]:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.settings.max_body_bytes:
                return None, self.too_large()
            if not message.get("more_body", False):
                return b"".join(parts), None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then listens to the client again."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def body_error_message(error: BaseException | None) -> str:
    """What was wrong with a body that could not be parsed, in words."""
    if isinstance(error, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {error.start}); send JSON encoded as UTF-8"
    if isinstance(error, RecursionError):
        return "the body's JSON is nested too deeply to be a request"
    return "the body could not be read as JSON; send a JSON object encoded as UTF-8"


def with_bearer_scheme(schema: dict, required: bool) -> dict:
    """Declare the API key as a bearer scheme (``/docs`` shows an Authorize button); optional when none is set."""
    description = "the server's TRIPLEX_API_KEY" + ("" if required else " (this server sets none)")
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": description,
    }
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}] if required else [{"bearer": []}, {}]
    return schema


@dataclass
class Service:
    settings: Settings
    metrics: Metrics
    config: ExtractorConfig | None = None
    tokenizer: object = None
    client: EngineClient | None = None

    @property
    def ready(self) -> bool:
        return self.client is not None and self.client.ready

    async def windows(self, texts: list[str]) -> list[list[Encoded]]:
        """Tokenized windows per text, a slice of texts at a time with the event loop free in between."""
        windows: list[list[Encoded]] = []
        for chunk in slices(texts, [len(text) for text in texts], SLICE_CHARACTERS):
            if windows:
                await asyncio.sleep(0)  # other requests' work runs here
            windows += encode_windows(self.tokenizer, chunk, self.config.max_length, self.config.window_stride)
        return windows

    async def results(self, windows: list[list[Encoded]], spans: Spans) -> bytes:
        """The response body: each text's triples, merged across its windows, as JSON; a slice of texts
        at a time, so that small requests are answered in between the slices of a big one."""
        parts: list[bytes] = []
        done = 0  # windows decoded so far
        for chunk in slices(windows, [len(text_windows) for text_windows in windows], SLICE_WINDOWS):
            if parts:
                await asyncio.sleep(0)  # other requests' work runs here
            flat = [window for text_windows in chunk for window in text_windows]
            found = iter(to_triples(flat, spans.windows_between(done, done + len(flat)), self.config))
            done += len(flat)
            for text_windows in chunk:
                triples = merge_windows(text_windows, [next(found) for _ in text_windows])
                result = {"triples": [triple.to_dict() for triple in triples], "windows": len(text_windows)}
                parts.append(orjson.dumps(result))  # a tenth of json.dumps' time (measured: 1.2 against 10.9 us)
        return b'{"results":[' + b",".join(parts) + b"]}"


def slices(items: list, sizes: list[int], limit: int) -> Iterator[list]:
    """Consecutive slices of ``items`` whose sizes add up to about ``limit`` (one item at least)."""
    begin, total = 0, 0
    for end, size in enumerate(sizes, 1):
        total += size
        if total >= limit:
            yield items[begin:end]
            begin, total = end, 0
    if begin < len(items):
        yield items[begin:]


def load_front_end(folder: Path) -> tuple[ExtractorConfig, object]:
    """What a front end needs of the export: the settings and the tokenizer, not the graphs."""
    check_export_folder(folder)
    return ExtractorConfig.load(folder), load_tokenizer(folder)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    service = Service(settings, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.config, service.tokenizer = load_front_end(Path(settings.model_dir))
        socket_path, supervisor = settings.engine_socket, None
        if socket_path is None:  # run on its own (tests, plain uvicorn): start an engine process of its own
            socket_path = str(Path(tempfile.mkdtemp(prefix="triplex-")) / "engine.sock")
            supervisor = EngineSupervisor(socket_path, settings.environment())
            await asyncio.to_thread(supervisor.start)
        app.state.supervisor = supervisor
        service.client = EngineClient(socket_path)
        await service.client.start(timeout=600)
        yield
        await service.client.drain(settings.request_timeout_s)
        if supervisor is not None:
            await asyncio.to_thread(supervisor.stop)

    app = FastAPI(
        title="triplex",
        version=__version__,
        description="Relational triple extraction: POST text, get (subject, predicate, object) triples.",
        lifespan=lifespan,
        docs_url=None,  # below, with assets from an installed package instead of a CDN
        redoc_url=None,
        # Metrics are Prometheus's (below). FastAPI's OpenTelemetry probe reads environment variables
        # on every request: 4% of a front end's time under load (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"msg": "invalid request"}
        if first.get("type") == "json_invalid":
            reason = first.get("ctx", {}).get("error", "not JSON")
            return error_response(
                400, "invalid_json", f"the body is not valid JSON: {reason} at character {first['loc'][-1]}"
            )
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(422, "invalid_request", message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"no such path: {request.url.path}; the API is under /v1 (see /docs)"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "another method")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        elif error.status_code == 400:
            return error_response(400, "invalid_json", body_error_message(error.__cause__))
        else:
            message = str(error.detail)
        return error_response(
            error.status_code, HTTP_CODES.get(error.status_code, "http_error"), message, error.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return error_response(
            500, "internal_error", f"unexpected {type(error).__name__}; the request was not completed"
        )

    app.add_middleware(Gate, settings=settings)
    app.add_middleware(CountRequests, metrics=service.metrics)
    openapi = app.openapi
    app.openapi = lambda: with_bearer_scheme(openapi(), required=settings.api_key is not None)

    async def running() -> Service:
        if not service.ready:
            raise ApiError(503, "not_ready", "the engine is loading or restarting; retry shortly", {"Retry-After": "1"})
        return service

    v1 = APIRouter(prefix="/v1", responses=ERRORS)  # the API key is checked by ``Gate``

    @v1.post("/extract", response_model=ExtractResponse)
    async def extract(
        body: ExtractRequest, request: Request, current: Annotated[Service, Depends(running)]
    ) -> Response:
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
        # Tokenizing and decoding stay on the event loop, in slices: a worker thread would hold the
        # GIL against it and every small request would queue behind the big one's Python work.
        windows = await current.windows(texts)
        flat = [window for text_windows in windows for window in text_windows]
        deadline = time.monotonic() + settings.request_timeout_s
        spans = await wait_for_spans(current.client, flat, request, deadline)
        body = await current.results(windows, spans)
        # already the API's JSON form (the triples' own, the CLI's too); FastAPI need not check it again
        return Response(body, media_type="application/json")

    @v1.get("/schema", response_model=SchemaResponse)
    async def schema(current: Annotated[Service, Depends(running)]) -> SchemaResponse:
        relations = current.config.relations
        return SchemaResponse(
            predicates=sorted({r.predicate for r in relations}),
            entity_types=sorted({t for r in relations for t in (r.subject_type, r.object_type) if t}),
            relations=[RelationOut(**vars(r)) for r in relations],
            examples=current.config.examples,
        )

    @v1.get("/model", response_model=ModelResponse)
    async def model_info(current: Annotated[Service, Depends(running)]) -> ModelResponse:
        config = current.config
        return ModelResponse(
            name=Path(settings.model_dir).resolve().name,
            version=__version__,
            precision=current.client.info["precision"],
            provider=current.client.info["provider"],
            max_length=config.max_length,
            window_stride=config.window_stride,
            fusions=config.export.fusions if config.export else {},
            thresholds=current.client.info["thresholds"],
            export=asdict(config.export) if config.export else None,
            training=config.training,
        )

    app.include_router(v1)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> dict[str, str]:
        await running()
        return {"status": "ready"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="triplex API",
            swagger_js_url="/assets/docs/swagger-ui-bundle.js",
            swagger_css_url="/assets/docs/swagger-ui.css",
            swagger_favicon_url="/assets/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url,
            title="triplex API",
            redoc_js_url="/assets/docs/redoc.standalone.js",
            redoc_favicon_url="/assets/docs/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = LOCAL_ONLY  # ReDoc's badge would fetch its logo from a CDN
        return page

    app.mount("/assets/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/assets", StaticFiles(directory=STATIC), name="assets")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(await asyncio.to_thread(exposition), media_type=CONTENT_TYPE_LATEST)

    return app


async def wait_for_spans(client: EngineClient, windows: list[Encoded], request: Request, deadline: float) -> Spans:
    """The engine's answer, or 504 at the deadline; a client that goes away has its request dropped."""
    try:
        request_id, future = client.submit(windows, deadline)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ApiError(
                        504,
                        "timeout",
                        "the request waited past its deadline; retry or raise TRIPLEX_REQUEST_TIMEOUT_S",
                    )
                done, _ = await asyncio.wait({future}, timeout=min(remaining, DISCONNECT_POLL_S))
                if done:
                    return future.result()
                if await request.is_disconnected():
                    raise ApiError(499, "client_closed", "the client closed the connection")
        finally:
            if not future.done():
                client.cancel(request_id)
    except EngineError as error:
        headers = {"Retry-After": "1"} if error.status in (429, 503) else None
        raise ApiError(error.status, error.code, error.message, headers) from None
