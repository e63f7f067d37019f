"""Structured logging for every process: JSON lines, call id bound, numbers masked, no secrets.

Every way into the log goes through the same masking, tracebacks included: our structlog loggers;
the stdlib loggers (uvicorn's "Exception in ASGI application", its access log, SQLAlchemy, asyncio,
twilio), whose records a ProcessorFormatter on the root handler runs through the same processors;
and pipecat's loguru, through a sink that masks each record as written, its traceback with it.
"""

import logging
import re
import sys

import structlog

# A + and 7 to 15 digits, written together or with the separators people put between them.
_PHONE_NUMBER = re.compile(r"\+\d(?:[\s().-]{0,2}\d){6,14}")
_SECRET_KEYS = ("token", "secret", "password", "api_key", "apikey", "authorization", "auth")
# uvicorn configures these with handlers of its own, which would print past the masking.
_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "sqlalchemy.engine")


def _starred(match: re.Match[str]) -> str:
    number = match.group(0)
    digits = sum(character.isdigit() for character in number)
    seen, shown = 0, []
    for character in number:
        if character.isdigit():
            seen += 1
            character = character if seen <= 2 or seen > digits - 2 else "*"
        shown.append(character)
    return "".join(shown)


def mask_phone_numbers(text: str) -> str:
    """Each phone number in the text keeps its first two and last two digits: +14*******23."""
    return _PHONE_NUMBER.sub(_starred, text)


def _masked(value: object) -> object:
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def _scrub(_logger, _method, event_dict):
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_KEYS) and value is not None:
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _masked(value)
    return event_dict


def _route_stdlib_logging(level: int, renderer) -> None:
    """Send every stdlib logger's records, with their tracebacks, through the same processors."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("voice_caller_masked")
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == "voice_caller_masked"]:
        root.removeHandler(previous)
    root.addHandler(handler)
    # Other libraries' INFO (httpx, twilio) stays out of the log unless DEBUG is asked for, as before;
    # loggers given a level of their own (uvicorn's) keep it.
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    for name in _STDLIB_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


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
            # Before the masking, so that a traceback is masked like any other text.
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(numeric, renderer)
    # Pipecat logs through loguru; keep it quieter than ours. The sink masks the record as written,
    # so an exception's traceback is masked too (a patcher sees only the message).
    try:
        from loguru import logger as loguru_logger

        loguru_logger.remove()

        def masked_sink(record: object) -> None:
            sys.stderr.write(mask_phone_numbers(str(record)))

        loguru_logger.add(masked_sink, level="WARNING" if numeric > logging.DEBUG else "DEBUG")
    except ImportError:
        pass


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
