"""A campaign's pace: dials evenly spaced, at most `calls_per_minute` in any 60 s, and `max_concurrent_calls` at once.

Even spacing: a dial comes no sooner than 60 / calls_per_minute seconds after the campaign's last
one, so 60 a minute is one a second rather than sixty at the top of the minute (a burst that would
ring a whole team's phones at once and trip carriers' spam heuristics).

With Redis the limits hold across every worker process: one Lua script checks and takes both in a
single step, so two workers cannot each see the last free slot. The dials of the last minute are
a sorted set scored by time (a sliding window, not fixed minutes that allow a burst at the seam);
a running call holds a lease in a second sorted set, scored by when it expires, so the slot of a
worker that died without releasing it comes back by itself.

Without Redis (one process, the demo) `LocalCampaignLimiter` keeps the same two sets in memory.

Times are passed in (epoch seconds) rather than read here, so tests set the clock; every process
reads its own, which NTP keeps within far less than the window.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from models.settings import Settings

WINDOW_SECONDS = 60.0
SLOT_MARGIN_SECONDS = 120.0
# How soon to look again when every concurrent slot is taken: calls end at no predictable time.
CONCURRENCY_RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class CampaignLimits:
    calls_per_minute: int
    max_concurrent_calls: int


@dataclass(frozen=True)
class Grant:
    granted: bool
    # When refused: which limit, and how long until trying again can succeed.
    limit: str | None = None
    retry_in: float = 0.0


class CampaignLimiter(Protocol):
    async def acquire(
        self, campaign_id: int, lease_id: str, limits: CampaignLimits, now: float, reserve_within: float = 0.0
    ) -> Grant:
        """Take a dial from the rate window and a concurrent slot, both or neither; idempotent per lease_id.

        The dial goes in the campaign's next evenly spaced slot; one up to `reserve_within` seconds ahead
        is kept for this lease_id, and the refusal's retry_in says when it comes (then granted at once)."""
        ...

    async def release(self, campaign_id: int, lease_id: str) -> None:
        """The call ended: its concurrent slot is free (its dial still counts in the window)."""
        ...

    async def refund(self, campaign_id: int, lease_id: str) -> None:
        """Nothing was dialed after all: give back the dial and the slot."""
        ...

    async def room(self, campaign_id: int, limits: CampaignLimits, now: float, horizon: float = 0.0) -> int:
        """How many dials could be granted from now until now + horizon (evenly spaced), without taking any."""
        ...

    async def aclose(self) -> None: ...


def rate_key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}:dials"


def lease_key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}:leases"


# KEYS: dials, leases. ARGV: now_ms, window_ms, calls_per_minute, max_concurrent, lease_ms, lease_id, reserve_ms.
# Returns {1} when granted, {0, "rate"|"concurrency", retry_in_ms} when not. A dial's score is the
# time of its slot: a slot up to reserve_ms ahead is reserved for the caller, who is told to come
# back then (and is granted at once when it does); so runs waiting together each get their own slot.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local concurrent = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local id = ARGV[6]
local reserve = tonumber(ARGV[7])
local spacing = window / rate
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], id) then
  redis.call('ZADD', KEYS[2], now + lease, id)
  redis.call('PEXPIRE', KEYS[2], lease)
  return {1}
end
local reserved = redis.call('ZSCORE', KEYS[1], id)
if reserved then
  reserved = tonumber(reserved)
  if reserved > now then
    return {0, 'rate', math.max(1, reserved - now)}
  end
  if redis.call('ZCARD', KEYS[2]) >= concurrent then
    -- Its slot is gone by the time a line is free: it takes a new one then.
    redis.call('ZREM', KEYS[1], id)
    return {0, 'concurrency', 0}
  end
  redis.call('ZADD', KEYS[2], now + lease, id)
  redis.call('PEXPIRE', KEYS[2], lease)
  return {1}
end
if redis.call('ZCARD', KEYS[2]) >= concurrent then
  return {0, 'concurrency', 0}
end
if redis.call('ZCARD', KEYS[1]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  -- Clamped: a client whose clock lags another's could otherwise be told to wait past a whole window.
  return {0, 'rate', math.min(window, math.max(1, tonumber(oldest[2]) + window - now))}
end
local slot = now
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then slot = math.max(now, tonumber(newest[2]) + spacing) end
if slot > now + reserve then
  return {0, 'rate', math.min(window, math.max(1, slot - now))}
end
redis.call('ZADD', KEYS[1], slot, id)
redis.call('PEXPIRE', KEYS[1], math.ceil(window + slot - now))
if slot > now then
  return {0, 'rate', math.max(1, slot - now)}
end
redis.call('ZADD', KEYS[2], now + lease, id)
redis.call('PEXPIRE', KEYS[2], lease)
return {1}
"""

# KEYS: dials, leases. ARGV: now_ms, window_ms, calls_per_minute, max_concurrent, horizon_ms.
# Returns the room left: what both limits allow, and no more evenly spaced slots than fall before now + horizon.
_ROOM = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local spacing = window / tonumber(ARGV[3])
local dials = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf')
local running = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local next_slot = now
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then next_slot = math.max(now, tonumber(newest[2]) + spacing) end
local slots = 0
if next_slot <= now + tonumber(ARGV[5]) then slots = math.floor((now + tonumber(ARGV[5]) - next_slot) / spacing) + 1 end
return math.max(0, math.min(tonumber(ARGV[3]) - dials, tonumber(ARGV[4]) - running, slots))
"""


def spacing_seconds(limits: CampaignLimits) -> float:
    """The least time between two of a campaign's dials."""
    return WINDOW_SECONDS / limits.calls_per_minute


def spaced_slots(next_slot: float, now: float, horizon: float, spacing: float) -> int:
    """How many evenly spaced dials fit from `next_slot` until now + horizon."""
    if next_slot > now + horizon:
        return 0
    return int((now + horizon - max(next_slot, now)) // spacing) + 1


def _refusal(limit: str, retry_in_ms: float) -> Grant:
    if limit == "concurrency":
        return Grant(False, "concurrency", CONCURRENCY_RECHECK_SECONDS)
    return Grant(False, "rate", max(retry_in_ms / 1000.0, 0.001))


class RedisCampaignLimiter:
    """The limits of every campaign, shared by all processes using one Redis."""

    def __init__(self, redis_url: str, lease_seconds: float) -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._lease_ms = int(lease_seconds * 1000)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._room = self._redis.register_script(_ROOM)

    async def acquire(
        self, campaign_id: int, lease_id: str, limits: CampaignLimits, now: float, reserve_within: float = 0.0
    ) -> Grant:
        args: list[int | str] = [
            int(now * 1000),
            int(WINDOW_SECONDS * 1000),
            limits.calls_per_minute,
            limits.max_concurrent_calls,
            self._lease_ms,
            lease_id,
            int(reserve_within * 1000),
        ]
        answer = await self._acquire(keys=[rate_key(campaign_id), lease_key(campaign_id)], args=args)
        if int(answer[0]) == 1:
            return Grant(True)
        return _refusal(answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1]), float(answer[2]))

    async def release(self, campaign_id: int, lease_id: str) -> None:
        await self._redis.zrem(lease_key(campaign_id), lease_id)

    async def refund(self, campaign_id: int, lease_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(rate_key(campaign_id), lease_id)
            pipe.zrem(lease_key(campaign_id), lease_id)
            await pipe.execute()

    async def room(self, campaign_id: int, limits: CampaignLimits, now: float, horizon: float = 0.0) -> int:
        args = [
            int(now * 1000),
            int(WINDOW_SECONDS * 1000),
            limits.calls_per_minute,
            limits.max_concurrent_calls,
            int(horizon * 1000),
        ]
        return int(await self._room(keys=[rate_key(campaign_id), lease_key(campaign_id)], args=args))

    async def aclose(self) -> None:
        await self._redis.aclose()


@dataclass
class _CampaignWindow:
    dials: dict[str, float] = field(default_factory=dict)
    leases: dict[str, float] = field(default_factory=dict)

    def forget_before(self, now: float) -> None:
        self.dials = {k: at for k, at in self.dials.items() if at > now - WINDOW_SECONDS}
        self.leases = {k: until for k, until in self.leases.items() if until > now}

    def next_slot(self, spacing: float) -> float:
        return max(self.dials.values()) + spacing if self.dials else float("-inf")


class LocalCampaignLimiter:
    """The same limits for a single process (no REDIS_URL)."""

    def __init__(self, lease_seconds: float) -> None:
        self._lease = lease_seconds
        self._campaigns: dict[int, _CampaignWindow] = {}
        self._lock = asyncio.Lock()

    async def acquire(
        self, campaign_id: int, lease_id: str, limits: CampaignLimits, now: float, reserve_within: float = 0.0
    ) -> Grant:
        async with self._lock:
            window = self._campaigns.setdefault(campaign_id, _CampaignWindow())
            window.forget_before(now)
            if lease_id in window.leases:
                window.leases[lease_id] = now + self._lease
                return Grant(True)
            reserved = window.dials.get(lease_id)
            if reserved is not None:
                if reserved > now:
                    return _refusal("rate", (reserved - now) * 1000)
                if len(window.leases) >= limits.max_concurrent_calls:
                    del window.dials[lease_id]  # its slot is gone by the time a line is free
                    return _refusal("concurrency", 0)
                window.leases[lease_id] = now + self._lease
                return Grant(True)
            if len(window.leases) >= limits.max_concurrent_calls:
                return _refusal("concurrency", 0)
            if len(window.dials) >= limits.calls_per_minute:
                return _refusal("rate", (min(window.dials.values()) + WINDOW_SECONDS - now) * 1000)
            slot = max(now, window.next_slot(spacing_seconds(limits)))
            if slot > now + reserve_within:
                return _refusal("rate", (slot - now) * 1000)
            window.dials[lease_id] = slot
            if slot > now:
                return _refusal("rate", (slot - now) * 1000)
            window.leases[lease_id] = now + self._lease
            return Grant(True)

    async def release(self, campaign_id: int, lease_id: str) -> None:
        async with self._lock:
            self._campaigns.get(campaign_id, _CampaignWindow()).leases.pop(lease_id, None)

    async def refund(self, campaign_id: int, lease_id: str) -> None:
        async with self._lock:
            window = self._campaigns.get(campaign_id, _CampaignWindow())
            window.leases.pop(lease_id, None)
            window.dials.pop(lease_id, None)

    async def room(self, campaign_id: int, limits: CampaignLimits, now: float, horizon: float = 0.0) -> int:
        async with self._lock:
            window = self._campaigns.setdefault(campaign_id, _CampaignWindow())
            window.forget_before(now)
            spacing = spacing_seconds(limits)
            slots = spaced_slots(window.next_slot(spacing), now, horizon, spacing)
            return max(
                0, min(limits.calls_per_minute - len(window.dials), limits.max_concurrent_calls - len(window.leases), slots)
            )

    async def aclose(self) -> None:
        return None


def slot_lease_seconds(settings: Settings) -> float:
    """A concurrent slot not released (its worker died) frees itself after the longest call and a margin."""
    return settings.max_call_seconds + SLOT_MARGIN_SECONDS


def make_campaign_limiter(redis_url: str | None, lease_seconds: float) -> CampaignLimiter:
    if redis_url:
        return RedisCampaignLimiter(redis_url, lease_seconds)
    return LocalCampaignLimiter(lease_seconds)


_LOCAL_LIMITERS: dict[float, LocalCampaignLimiter] = {}


def process_campaign_limiter(settings: Settings) -> tuple[CampaignLimiter, bool]:
    """The limiter a process's parts share, and whether the caller must close it.

    Without Redis the slots live in this process's memory, so whoever takes a slot (the in-process
    scheduler) and whoever frees it (the after-call hook) must hold the same object; with Redis a
    fresh client sees the same slots, and is the caller's to close.
    """
    lease = slot_lease_seconds(settings)
    if settings.redis_url:
        return RedisCampaignLimiter(settings.redis_url, lease), True
    return _LOCAL_LIMITERS.setdefault(lease, LocalCampaignLimiter(lease)), False
