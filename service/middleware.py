"""Plain ASGI middleware of the app: Starlette's ``BaseHTTPMiddleware`` costs a task group per request,
measurable on a loaded CPU."""

from __future__ import annotations

import secrets
import time

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import Metrics
from .settings import ServiceSettings


class CountRequests:
    """Requests by route and status, and their latency."""

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
    over the limit is refused without being read whole)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
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
