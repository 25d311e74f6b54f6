"""Log lines of the server: uvicorn's own text format, or one JSON object per line (``TRIPLEX_LOG_FORMAT=json``)."""

from __future__ import annotations

import copy
import json
import logging
import logging.config

from uvicorn.config import LOGGING_CONFIG

logger = logging.getLogger("triplex")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def log_config(log_format: str) -> dict:
    """uvicorn's logging configuration with a ``triplex`` logger, in text or JSON lines."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["triplex"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if log_format == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = f"{__name__}.JsonLines"
    return config


def configure(log_format: str) -> dict:
    config = log_config(log_format)
    logging.config.dictConfig(config)
    return config
