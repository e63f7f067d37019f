"""Structured logging for every process: JSON lines, call id bound, numbers masked, no secrets."""

import logging
import re
import sys

import structlog

_E164 = re.compile(r"\+\d{7,15}")
_SECRET_KEYS = ("token", "secret", "password", "api_key", "apikey", "authorization", "auth")


def _mask_e164(text: str) -> str:
    return _E164.sub(lambda m: m.group(0)[:3] + "*" * (len(m.group(0)) - 5) + m.group(0)[-2:], text)


def _scrub(_logger, _method, event_dict):
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_KEYS) and value is not None:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _mask_e164(value)
    return event_dict


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Pipecat logs through loguru; keep it quieter than ours and mask numbers there too.
    try:
        from loguru import logger as loguru_logger

        loguru_logger.remove()
        loguru_logger.configure(patcher=lambda record: record.__setitem__("message", _mask_e164(record["message"])))
        loguru_logger.add(sys.stderr, level="WARNING" if numeric > logging.DEBUG else "DEBUG")
    except ImportError:
        pass


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
