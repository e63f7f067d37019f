"""The media stream credential: what a `<Stream>` carries so that `/ws` admits it.

Both sides use it: the dialers put it in the TwiML (or hand it to an external client), the worker
checks it before any pipeline starts. The token is an HMAC-SHA256 of the call id keyed by SECRET_KEY (hex).
"""

import hashlib
import hmac
from uuid import UUID

from models.settings import Settings

STREAM_PATH = "/ws"


def stream_token(call_id: UUID | str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), str(call_id).encode(), hashlib.sha256).hexdigest()


def token_matches(call_id: UUID | str, token: str | None, secret_key: str) -> bool:
    if not token:
        return False
    return hmac.compare_digest(stream_token(call_id, secret_key), token)


def ws_url(settings: Settings) -> str:
    """Where media streams connect: the voice pool when there is one, else this app's own /ws."""
    base = (settings.voice_public_url or settings.public_base_url).rstrip("/")
    scheme = "wss" if base.startswith("https://") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}{STREAM_PATH}"


def stream_parameters(settings: Settings, call_id: UUID | str) -> dict[str, str]:
    """The `<Parameter>`s of the call's `<Stream>`: `call_id` and its `token`."""
    return {"call_id": str(call_id), "token": stream_token(call_id, settings.secret_key.get_secret_value())}
