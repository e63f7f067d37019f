"""What the media stream endpoint needs from the process hosting it."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from models.session_store import SessionStore
from models.settings import Settings
from models.tables import Call

CallFinishedHook = Callable[[Call], Awaitable[None]]


@dataclass
class WorkerDeps:
    settings: Settings
    store: SessionStore
    engine: Engine
    # Run after a call's outcome is stored (SMS follow-up, lead updates); a failing hook is logged, never fatal.
    on_call_finished: list[CallFinishedHook] = field(default_factory=list)
    live_calls: dict[str, object] = field(default_factory=dict)
