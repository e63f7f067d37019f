"""The media stream token: HMAC-SHA256 of the call id keyed by SECRET_KEY (hex)."""

import hashlib
import hmac
from uuid import UUID


def stream_token(call_id: UUID | str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), str(call_id).encode(), hashlib.sha256).hexdigest()


def token_matches(call_id: UUID | str, token: str | None, secret_key: str) -> bool:
    if not token:
        return False
    return hmac.compare_digest(stream_token(call_id, secret_key), token)
