"""Service settings: environment variables with the prefix ``TRIPLEX_`` (flags of ``triplex serve`` set them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..model.schema import Thresholds


class SettingsError(ValueError):
    """A ``TRIPLEX_*`` variable (or the flag that set it) holds a value it cannot take."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIPLEX_", extra="ignore")

    model_dir: Path = Field(Path("export"), description="export folder written by `triplex export`")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in the container)")
    port: int = Field(8000, description="port to listen on")
    workers: int = Field(1, ge=1, description="HTTP front-end processes; all feed one engine process")
    provider: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto (CUDA when available), cuda or cpu")
    threads: int = Field(0, ge=0, description="CPU threads per engine (0: one per core)")
    max_batch_size: int = Field(
        0, ge=0, description="windows per engine call; 1 disables batching; 0: 8 on the CPU, 64 on a GPU"
    )
    max_batch_tokens: int = Field(16384, ge=1, description="padded tokens per engine call")
    max_queue: int = Field(32768, ge=1, description="windows waiting at most; beyond it requests get 429")
    max_text_chars: int = Field(100_000, ge=1, description="characters per text; longer texts get 413")
    max_texts: int = Field(64, ge=1, description="texts per request; more get 413")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1, description="bytes per request body; larger bodies get 413 without being read whole"
    )
    request_timeout_s: float = Field(30.0, gt=0, description="a request waiting longer gets 504")
    thresholds: str | None = Field(
        None,
        description="START,END pointer thresholds instead of the model's own (chosen on dev data); four numbers: "
        "the subjects' start and end, then the objects'",
    )
    access_log: bool = Field(False, description="log every request (uvicorn's access log); costs CPU under load")
    log_format: Literal["text", "json"] = Field("text", description="text, or json: one JSON object per log line")
    api_key: SecretStr | None = Field(None, description="when set, requests need `Authorization: Bearer <key>`")
    engine_socket: str | None = Field(
        None, description="Unix socket of a running engine process (set by `triplex serve`; unset: the app starts one)"
    )

    @field_validator("thresholds")
    @classmethod
    def valid_thresholds(cls, value: str | None) -> str | None:
        if value is not None:
            Thresholds.parse(value)
        return value

    def chosen_thresholds(self) -> Thresholds | None:
        return Thresholds.parse(self.thresholds) if self.thresholds else None

    @classmethod
    def read(cls, **values) -> ServiceSettings:
        """The settings, or a ``SettingsError`` naming each bad variable and what it accepts."""
        try:
            return cls(**values)
        except ValidationError as error:
            problems = []
            for problem in error.errors():
                name = f"TRIPLEX_{'_'.join(str(part) for part in problem['loc'][:1]).upper()}"
                problems.append(f"{name}={problem.get('input')!s}: {problem['msg']}")
            raise SettingsError("; ".join(problems)) from None

    def environment(self) -> dict[str, str]:
        """These settings as the ``TRIPLEX_*`` variables a child process reads them from."""
        variables = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                value = value.get_secret_value() if isinstance(value, SecretStr) else value
                variables[f"TRIPLEX_{name.upper()}"] = str(value)
        return variables

    def batch_size(self, on_gpu: bool) -> int:
        """Measured on 2 CPU cores: batches of 8 beat 32 (less padding, and batching gains little there)."""
        return self.max_batch_size or (64 if on_gpu else 8)
