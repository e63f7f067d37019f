"""Short-lived call state: Redis when REDIS_URL is set, an in-process store otherwise.

Every key is namespaced (`call:{id}`, `context:{id}`, `ratelimit:{ip}`, ...) and
carries a TTL, so nothing in the store outlives the call it belongs to.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from uuid import UUID

from models.call_job import CALL_JOB_TTL_SECONDS, CallJob
from models.context import ContextInstance

ACTIVE_CALLS_KEY = "calls:active"


def call_key(call_id: UUID | str) -> str:
    return f"call:{call_id}"


def context_key(context_id: UUID | str) -> str:
    return f"context:{context_id}"


def phone_lock_key(phone: str) -> str:
    return f"phone:{phone}"


def stream_key(call_id: UUID | str) -> str:
    return f"stream:{call_id}"


class SessionStoreUnavailable(RuntimeError):
    """The store could not be reached; callers decide whether that is fatal."""


class SessionStore(ABC):
    """Key/value primitives with TTLs, and the call-level operations built on them once."""

    # --- primitives each backend provides -------------------------------------------------
    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl_seconds: float, *, only_if_absent: bool = False) -> bool: ...

    @abstractmethod
    async def replace(self, key: str, value: str) -> bool:
        """Overwrite an existing key and keep its TTL; False when the key has expired."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key does not exist."""

    @abstractmethod
    async def window_hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        """Count one hit in a fixed window; return (hits so far, seconds until the window resets)."""

    @abstractmethod
    async def active_add(self, member: str, until: float) -> None: ...

    @abstractmethod
    async def active_remove(self, member: str) -> None: ...

    @abstractmethod
    async def active_count(self, now: float) -> int: ...

    @abstractmethod
    async def ping(self) -> bool: ...

    async def close(self) -> None:
        return None

    # --- call-level operations ---------------------------------------------------------------
    async def save_call(self, job: CallJob, context: ContextInstance) -> None:
        ttl = max(job.seconds_until_expiry(), 0.001)
        await self.set(context_key(context.id), context.model_dump_json(), ttl)
        await self.set(call_key(job.id), job.model_dump_json(), ttl)
        await self.active_add(str(job.id), job.expires_at.timestamp())

    async def load_job(self, call_id: UUID | str) -> CallJob | None:
        raw = await self.get(call_key(call_id))
        if raw is None:
            return None
        job = CallJob.model_validate_json(raw)
        return None if job.is_expired() else job

    async def load_context(self, context_id: UUID | str) -> ContextInstance | None:
        raw = await self.get(context_key(context_id))
        return None if raw is None else ContextInstance.model_validate_json(raw)

    async def update_job(self, job: CallJob) -> bool:
        """Write the job back without extending its life; False if it already expired."""
        return await self.replace(call_key(job.id), job.model_dump_json())

    async def claim_phone(self, phone: str, call_id: UUID | str, ttl_seconds: float = CALL_JOB_TTL_SECONDS) -> str | None:
        """Reserve a number for one call at a time; returns the holder's id if already taken."""
        if await self.set(phone_lock_key(phone), str(call_id), ttl_seconds, only_if_absent=True):
            return None
        return await self.get(phone_lock_key(phone))

    async def claim_stream(self, call_id: UUID | str, ttl_seconds: float, holder: str) -> bool:
        """Take the one media stream a call may have for `holder`; False when another stream already took it.

        One atomic SET NX, so `start`s racing with one token leave one winner, whatever process each reached.
        Claiming again for the same holder answers True (a retry after a timeout that did set the key).
        """
        if await self.set(stream_key(call_id), holder, max(ttl_seconds, 0.001), only_if_absent=True):
            return True
        return await self.get(stream_key(call_id)) == holder

    async def release_phone(self, phone: str, call_id: UUID | str) -> None:
        if await self.get(phone_lock_key(phone)) == str(call_id):
            await self.delete(phone_lock_key(phone))

    async def mark_inactive(self, call_id: UUID | str) -> None:
        await self.active_remove(str(call_id))

    async def count_active_calls(self) -> int:
        return await self.active_count(time.time())


class MemorySessionStore(SessionStore):
    """Same TTL semantics as Redis, for a single process."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[str, float]] = {}
        self._active: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def _live(self, key: str) -> tuple[str, float] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    async def get(self, key: str) -> str | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def set(self, key: str, value: str, ttl_seconds: float, *, only_if_absent: bool = False) -> bool:
        if ttl_seconds <= 0:
            raise ValueError("every session key needs a positive TTL")
        async with self._lock:
            if only_if_absent and self._live(key) is not None:
                return False
            self._data[key] = (value, self._clock() + ttl_seconds)
            return True

    async def replace(self, key: str, value: str) -> bool:
        async with self._lock:
            item = self._live(key)
            if item is None:
                return False
            self._data[key] = (value, item[1])
            return True

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        return None if item is None else item[1] - self._clock()

    async def window_hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        async with self._lock:
            item = self._live(key)
            if item is None:
                self._data[key] = ("1", self._clock() + window_seconds)
                return 1, window_seconds
            hits = int(item[0]) + 1
            self._data[key] = (str(hits), item[1])
            return hits, item[1] - self._clock()

    async def active_add(self, member: str, until: float) -> None:
        self._active[member] = until

    async def active_remove(self, member: str) -> None:
        self._active.pop(member, None)

    async def active_count(self, now: float) -> int:
        for member in [m for m, until in self._active.items() if until <= now]:
            del self._active[member]
        return len(self._active)

    async def ping(self) -> bool:
        return True


class RedisSessionStore(SessionStore):
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._redis = redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        )

    async def _run(self, coro):
        try:
            return await coro
        except self._errors as exc:
            raise SessionStoreUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc

    async def get(self, key: str) -> str | None:
        return await self._run(self._redis.get(key))

    async def set(self, key: str, value: str, ttl_seconds: float, *, only_if_absent: bool = False) -> bool:
        if ttl_seconds <= 0:
            raise ValueError("every session key needs a positive TTL")
        ms = max(int(ttl_seconds * 1000), 1)
        return bool(await self._run(self._redis.set(key, value, px=ms, nx=only_if_absent)))

    async def replace(self, key: str, value: str) -> bool:
        return bool(await self._run(self._redis.set(key, value, xx=True, keepttl=True)))

    async def delete(self, key: str) -> None:
        await self._run(self._redis.delete(key))

    async def ttl(self, key: str) -> float | None:
        ms = await self._run(self._redis.pttl(key))
        return None if ms is None or ms < 0 else ms / 1000

    async def window_hit(self, key: str, window_seconds: float) -> tuple[int, float]:
        ms = max(int(window_seconds * 1000), 1)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, 0, px=ms, nx=True)
        pipe.incr(key)
        pipe.pttl(key)
        _, hits, left = await self._run(pipe.execute())
        return int(hits), max(left, 0) / 1000

    async def active_add(self, member: str, until: float) -> None:
        await self._run(self._redis.zadd(ACTIVE_CALLS_KEY, {member: until}))
        # The index itself must not outlive the calls it lists.
        await self._run(self._redis.expire(ACTIVE_CALLS_KEY, CALL_JOB_TTL_SECONDS))

    async def active_remove(self, member: str) -> None:
        await self._run(self._redis.zrem(ACTIVE_CALLS_KEY, member))

    async def active_count(self, now: float) -> int:
        await self._run(self._redis.zremrangebyscore(ACTIVE_CALLS_KEY, "-inf", now))
        return int(await self._run(self._redis.zcard(ACTIVE_CALLS_KEY)))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def create_session_store(redis_url: str | None) -> SessionStore:
    return RedisSessionStore(redis_url) if redis_url else MemorySessionStore()
