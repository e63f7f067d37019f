"""The 422 for a request that fails validation: each bad field named, its value quoted only in short.

FastAPI's own handler echoes each error's `input` whole: a 10 MB field came back as a 70 MB answer,
a missing field echoed the entire body (phone number included), and a lone surrogate in any field
(valid JSON, `"\\udc80"`, but no encodable string) made the answer itself fail with a 500.
"""

import json
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from models.call_request import mask_phone
from models.log_config import mask_phone_numbers

EXCERPT_CHARACTERS = 40
MESSAGE_CHARACTERS = 300
# A number without its + (a form-encoded body writes it %2B14155550123) is still someone's number.
_DIGIT_RUN = re.compile(r"\d{7,}")


def _masked_digits(text: str) -> str:
    return _DIGIT_RUN.sub(
        lambda run: run.group(0)[:2] + "*" * (len(run.group(0)) - 4) + run.group(0)[-2:], mask_phone_numbers(text)
    )


def printable(text: str) -> str:
    """The text with lone surrogates spelled out (\\udc80), so that it can be encoded as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def excerpt(value: Any, field: str | None = None) -> Any:
    """What a 422 may quote of a bad value: short, masked when it looks like a phone number."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
    elif isinstance(value, str):
        text = value
    else:  # an object or a list: a missing field's "input" is the whole body
        text = json.dumps(value, default=str, ensure_ascii=True)
    text = printable(text)
    if field is not None and "phone" in field.lower():
        return shortened(mask_phone(text), EXCERPT_CHARACTERS)
    # Masked before it is cut short, so that no cut leaves a number too short to be recognized.
    return shortened(_masked_digits(text), EXCERPT_CHARACTERS)


def public_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [
        part if isinstance(part, int) else shortened(printable(str(part)), EXCERPT_CHARACTERS) for part in error.get("loc", ())
    ]
    field = next((part for part in reversed(loc) if isinstance(part, str)), None)
    shown: dict[str, Any] = {
        "type": error.get("type", "value_error"),
        "loc": loc,
        "msg": shortened(mask_phone_numbers(printable(str(error.get("msg", "")))), MESSAGE_CHARACTERS),
    }
    if "input" in error:
        shown["input"] = excerpt(error["input"], field)
    # Limits such as max_length help the client; an exception object (a ValueError's) says nothing more than msg.
    context = {
        key: shortened(printable(value), MESSAGE_CHARACTERS) if isinstance(value, str) else value
        for key, value in (error.get("ctx") or {}).items()
        if isinstance(value, str | int | float | bool)
    }
    if context:
        shown["ctx"] = context
    return shown


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [public_error(error) for error in exc.errors()]}, status_code=422)
