"""Every error the API answers with: ``{"error": {"code": ..., "message": ...}}`` and a proper status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def body_error_message(error: BaseException | None) -> str:
    """What was wrong with a body that could not be parsed, in words."""
    if isinstance(error, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {error.start}); send JSON encoded as UTF-8"
    if isinstance(error, RecursionError):
        return "the body's JSON is nested too deeply to be a request"
    return "the body could not be read as JSON; send a JSON object encoded as UTF-8"


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, error.headers)


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
    return error_response(error.status_code, HTTP_CODES.get(error.status_code, "http_error"), message, error.headers)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    return error_response(500, "internal_error", f"unexpected {type(error).__name__}; the request was not completed")


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
