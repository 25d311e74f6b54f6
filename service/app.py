"""The FastAPI application: thin routes over a front end's share of the work.

Each HTTP process parses, validates, tokenizes, turns spans into triples and serializes (``FrontEnd``,
with the model's ``Codec``); the engine process (``service.engine_process``) forms batches across all of
them and runs the model.
"""

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import fastapi_offline
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..model.decode import Spans
from ..model.extractor import Codec
from ..model.runtime import check_export_folder
from ..model.schema import ExtractorConfig
from ..model.tokenize import Encoded, load_tokenizer
from .api_models import (
    ErrorResponse,
    ExtractRequest,
    ExtractResponse,
    ModelResponse,
    RelationOut,
    SchemaResponse,
)
from .client import EngineClient, EngineError
from .errors import ApiError, add_error_handlers, error_response
from .metrics import CONTENT_TYPE_LATEST, Metrics, exposition
from .middleware import CountRequests, Gate, replay
from .settings import ServiceSettings
from .supervisor import EngineSupervisor

FIRST_WAIT_S = 0.05  # an answer slower than this also listens for the client going away
SLICE_CHARACTERS = 8000  # a big request's texts are tokenized this much at a time
SLICE_WINDOWS = 64  # and decoded this many windows at a time
ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 429, 500, 503, 504)}
STATIC = Path(__file__).parent / "static"  # the web page at /
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI and ReDoc, served from here, no CDN
LOCAL_ONLY = "default-src 'self' 'unsafe-inline' blob: data:"


@dataclass
class FrontEnd:
    """One HTTP process's share: the model's codec (from the export, without its graphs) and the engine
    process's client, both set once the app has started."""

    settings: ServiceSettings
    metrics: Metrics
    codec: Codec | None = None
    client: EngineClient | None = None

    @property
    def ready(self) -> bool:
        return self.client is not None and self.client.ready

    @property
    def config(self) -> ExtractorConfig:
        return self.codec.config

    async def windows(self, texts: list[str]) -> list[list[Encoded]]:
        """Tokenized windows per text, a slice of texts at a time with the event loop free in between."""
        windows: list[list[Encoded]] = []
        for chunk in slices(texts, [len(text) for text in texts], SLICE_CHARACTERS):
            if windows:
                await asyncio.sleep(0)  # other requests' work runs here
            windows += self.codec.windows(chunk)
        return windows

    async def results(self, windows: list[list[Encoded]], spans: Spans) -> bytes:
        """The response body: each text's triples, merged across its windows, as JSON; a slice of texts
        at a time, so that small requests are answered in between the slices of a big one."""
        parts: list[bytes] = []
        done = 0  # windows decoded so far
        for chunk in slices(windows, [len(text_windows) for text_windows in windows], SLICE_WINDOWS):
            if parts:
                await asyncio.sleep(0)  # other requests' work runs here
            count = sum(map(len, chunk))
            for extraction in self.codec.triples(chunk, spans.windows_between(done, done + count)):
                parts.append(orjson.dumps(extraction.to_dict()))  # a tenth of json.dumps' time (1.2 against 10.9 us)
            done += count
        return b'{"results":[' + b",".join(parts) + b"]}"

    async def answer(self, texts: list[str], receive: Receive) -> bytes:
        """The response body for valid texts within the limits; ``receive`` tells when the client leaves."""
        # Tokenizing and decoding stay on the event loop, in slices: a worker thread would hold the
        # GIL against it and every small request would queue behind the big one's Python work.
        windows = await self.windows(texts)
        flat = [window for text_windows in windows for window in text_windows]
        deadline = time.monotonic() + self.settings.request_timeout_s
        spans = await wait_for_spans(self.client, flat, receive, deadline)
        return await self.results(windows, spans)

    async def start(self) -> EngineSupervisor | None:
        """The codec, and the engine process's client; an engine process of the app's own when no socket
        is set (tests, plain uvicorn)."""
        folder = Path(self.settings.model_dir)
        check_export_folder(folder)
        self.codec = Codec(load_tokenizer(folder), ExtractorConfig.load(folder))
        socket_path, supervisor = self.settings.engine_socket, None
        if socket_path is None:
            socket_path = str(Path(tempfile.mkdtemp(prefix="triplex-")) / "engine.sock")
            supervisor = EngineSupervisor(socket_path, self.settings.environment())
            await asyncio.to_thread(supervisor.start)
        self.client = EngineClient(socket_path)
        await self.client.start(timeout=600)
        return supervisor


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


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    front = FrontEnd(settings, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.supervisor = await front.start()
        yield
        await front.client.drain(settings.request_timeout_s)
        if app.state.supervisor is not None:
            await asyncio.to_thread(app.state.supervisor.stop)

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
    app.state.service = front
    add_error_handlers(app)
    api = api_routes(front)
    extract_route = next(route for route in api.routes if route.path == "/v1/extract")
    app.add_middleware(ExtractFastPath, front=front, route=extract_route)
    app.add_middleware(Gate, settings=settings)
    app.add_middleware(CountRequests, metrics=front.metrics)
    openapi = app.openapi
    app.openapi = lambda: with_bearer_scheme(openapi(), required=settings.api_key is not None)
    app.include_router(api)
    app.include_router(health_routes(front))
    app.include_router(page_routes(app))
    app.mount("/assets/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/assets", StaticFiles(directory=STATIC), name="assets")
    return app


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


def running(front: FrontEnd):
    """A dependency: the front end, or 503 while the engine loads or restarts."""

    async def dependency() -> FrontEnd:
        if not front.ready:
            raise ApiError(503, "not_ready", "the engine is loading or restarting; retry shortly", {"Retry-After": "1"})
        return front

    return dependency


def check_limits(texts: list[str], settings: ServiceSettings) -> None:
    if len(texts) > settings.max_texts:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
    for index, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            message = f"text {index} has {len(text)} characters; the limit is {settings.max_text_chars}"
            raise ApiError(413, "text_too_long", message)


def plain_texts(body: bytes) -> list[str] | None:
    """The texts of a body that is plainly valid, ``{"text": str}`` or ``{"texts": [str, ...]}``; None for
    anything else, which the app's route validates (and refuses) as always."""
    try:
        request = orjson.loads(body)  # refuses lone surrogates, as the route's validation does
    except orjson.JSONDecodeError:
        return None
    if not isinstance(request, dict) or len(request) != 1:
        return None
    texts = [request["text"]] if "text" in request else request.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        return None
    return texts


class ExtractFastPath:
    """``POST /v1/extract`` with a plainly valid body, answered without FastAPI's routing, dependencies,
    validation models and response objects (measured: see benchmarks/README.md, issue 28). Every other
    request, and every extract request that is not plainly valid or finds the engine not ready, goes on
    to the app unchanged. Inside ``Gate``: the API key and the body limit are checked before."""

    def __init__(self, app: ASGIApp, front: FrontEnd, route: APIRoute) -> None:
        self.app, self.front, self.route = app, front, route  # the app's own route: CountRequests' label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/extract" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        message = await receive()  # Gate has read the whole body and hands it over in one message
        texts = plain_texts(message.get("body", b"")) if self.front.ready else None
        if texts is None:
            await self.app(scope, replay(message.get("body", b""), receive), send)
            return
        scope["route"] = self.route
        try:
            check_limits(texts, self.front.settings)  # the route's own check, and its answer
            body = await self.front.answer(texts, receive)
        except ApiError as error:
            await error_response(error.status, error.code, error.message, error.headers)(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def api_routes(front: FrontEnd) -> APIRouter:
    v1 = APIRouter(prefix="/v1", responses=ERRORS)  # the API key is checked by ``Gate``
    Running = Annotated[FrontEnd, Depends(running(front))]
    settings = front.settings

    @v1.post("/extract", response_model=ExtractResponse)
    async def extract(body: ExtractRequest, request: Request, current: Running) -> Response:
        texts = body.all_texts
        check_limits(texts, settings)
        # already the API's JSON form (ExtractResponse, as the tests hold it); FastAPI need not build it again
        return Response(await current.answer(texts, request.receive), media_type="application/json")

    @v1.get("/schema", response_model=SchemaResponse)
    async def schema(current: Running) -> SchemaResponse:
        relations = current.config.relations
        return SchemaResponse(
            predicates=sorted({r.predicate for r in relations}),
            entity_types=sorted({t for r in relations for t in (r.subject_type, r.object_type) if t}),
            relations=[RelationOut(**vars(r)) for r in relations],
            examples=current.config.examples,
        )

    @v1.get("/model", response_model=ModelResponse)
    async def model_info(current: Running) -> ModelResponse:
        config, info = current.config, current.client.info
        return ModelResponse(
            name=Path(settings.model_dir).resolve().name,
            version=__version__,
            precision=info.precision,
            provider=info.provider,
            max_length=config.max_length,
            window_stride=config.window_stride,
            fusions=config.export.fusions if config.export else {},
            thresholds=info.thresholds,
            export=asdict(config.export) if config.export else None,
            training=config.training,
        )

    return v1


def health_routes(front: FrontEnd) -> APIRouter:
    health = APIRouter(prefix="/health")

    @health.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @health.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready(current: Annotated[FrontEnd, Depends(running(front))]) -> dict[str, str]:
        return {"status": "ready"}

    return health


def page_routes(app: FastAPI) -> APIRouter:
    """The web page, the API docs (assets served locally) and the metrics: none of them in the schema."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @pages.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="triplex API",
            swagger_js_url="/assets/docs/swagger-ui-bundle.js",
            swagger_css_url="/assets/docs/swagger-ui.css",
            swagger_favicon_url="/assets/docs/favicon.png",
        )

    @pages.get("/redoc")
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

    @pages.get("/metrics")
    async def metrics() -> Response:
        return Response(await asyncio.to_thread(exposition), media_type=CONTENT_TYPE_LATEST)

    return pages


def client_left(received: asyncio.Future) -> bool:
    """Whether what ``receive`` gave once the body was read says that the client went away."""
    return received.cancelled() or received.exception() is not None or received.result()["type"] == "http.disconnect"


async def wait_for_spans(client: EngineClient, windows: list[Encoded], receive: Receive, deadline: float) -> Spans:
    """The engine's answer, or 504 at the deadline; a client that goes away has its request dropped.

    Most answers come within a moment, and waiting on the future alone costs least; past that moment, the
    client's going away is awaited too (the ASGI server answers ``receive`` with a disconnect message),
    which costs a task per request but no polling however long the request waits."""
    gone: asyncio.Future | None = None
    try:
        request_id, future = client.submit(windows, deadline)
        try:
            await asyncio.wait({future}, timeout=max(0.0, min(deadline - time.monotonic(), FIRST_WAIT_S)))
            while not future.done() and (timeout := deadline - time.monotonic()) > 0:
                gone = gone or asyncio.ensure_future(receive())
                waiting = {future} if gone.done() else {future, gone}  # a message that was no disconnect: stop
                await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not future.done() and gone.done() and client_left(gone):
                    raise ApiError(499, "client_closed", "the client closed the connection")
            if future.done():
                return future.result()
            message = "the request waited past its deadline; retry or raise TRIPLEX_REQUEST_TIMEOUT_S"
            raise ApiError(504, "timeout", message)
        finally:
            if gone is not None:
                gone.cancel()
            if not future.done():
                client.cancel(request_id)
    except EngineError as error:
        headers = {"Retry-After": "1"} if error.status in (429, 503) else None
        raise ApiError(error.status, error.code, error.message, headers) from None
