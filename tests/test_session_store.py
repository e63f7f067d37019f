"""Both session stores keep the same TTL semantics; the Redis one against a real redis-server."""

import asyncio
from datetime import timedelta

import pytest

from models.call_job import CALL_JOB_TTL_SECONDS, CallJob, utcnow
from models.call_request import CallRequest
from models.context import ContextInstance
from models.session_store import MemorySessionStore, RedisSessionStore, call_key, context_key, stream_key
from prompts.context_builder import build_context
from tests.support import BOOK_MEETING_REQUEST


@pytest.fixture(params=["memory", "redis"])
async def store(request, clean_redis):
    if request.param == "memory":
        yield MemorySessionStore()
    else:
        redis_store = RedisSessionStore(clean_redis.url)
        yield redis_store
        await redis_store.close()


def _call(seconds_left: float = CALL_JOB_TTL_SECONDS) -> tuple[CallJob, ContextInstance]:
    context = build_context(CallRequest(**BOOK_MEETING_REQUEST))
    created = utcnow() - timedelta(seconds=CALL_JOB_TTL_SECONDS - seconds_left)
    return CallJob(context_id=context.id, phone=context.phone, created_at=created), context


async def test_job_and_context_round_trip_with_a_ttl_of_at_most_600_s(store):
    job, context = _call()
    await store.save_call(job, context)

    assert (await store.load_job(job.id)) == job
    assert (await store.load_context(context.id)) == context
    for key in (call_key(job.id), context_key(context.id)):
        assert 590 < await store.ttl(key) <= CALL_JOB_TTL_SECONDS


async def test_job_and_context_expire_when_the_job_does(store):
    job, context = _call(seconds_left=0.5)
    await store.save_call(job, context)
    assert await store.load_job(job.id) is not None
    assert await store.count_active_calls() == 1

    await asyncio.sleep(0.8)

    assert await store.load_job(job.id) is None
    assert await store.load_context(context.id) is None
    assert await store.count_active_calls() == 0


async def test_updating_a_job_never_extends_its_life(store):
    job, context = _call(seconds_left=5)
    await store.save_call(job, context)
    before = await store.ttl(call_key(job.id))
    await asyncio.sleep(0.2)
    assert await store.update_job(job.model_copy(update={"sms_sent": True}))

    after = await store.ttl(call_key(job.id))
    assert after < before
    assert (await store.load_job(job.id)).sms_sent is True


async def test_updating_an_expired_job_does_not_resurrect_it(store):
    job, context = _call(seconds_left=0.2)
    await store.save_call(job, context)
    await asyncio.sleep(0.4)

    assert await store.update_job(job) is False
    assert await store.get(call_key(job.id)) is None


async def test_one_call_at_a_time_per_number(store):
    assert await store.claim_phone("+14155550123", "a") is None
    assert await store.claim_phone("+14155550123", "b") == "a"
    await store.release_phone("+14155550123", "b")  # not the holder: no effect
    assert await store.claim_phone("+14155550123", "c") == "a"
    await store.release_phone("+14155550123", "a")
    assert await store.claim_phone("+14155550123", "c") is None


async def test_fixed_window_counts_hits_and_resets(store):
    hits = [await store.window_hit("ratelimit:127.0.0.1", 0.5) for _ in range(3)]
    assert [h for h, _ in hits] == [1, 2, 3]
    assert all(0 < left <= 0.5 for _, left in hits)
    await asyncio.sleep(0.6)
    assert (await store.window_hit("ratelimit:127.0.0.1", 0.5))[0] == 1


async def test_every_key_needs_a_ttl(store):
    with pytest.raises(ValueError):
        await store.set("call:x", "{}", 0)


async def test_a_call_stream_is_claimed_once_with_the_calls_ttl(store):
    job, _context = _call(seconds_left=120)

    claims = await asyncio.gather(*(store.claim_stream(job.id, job.seconds_until_expiry(), f"s{n}") for n in range(10)))

    assert claims.count(True) == 1
    assert await store.claim_stream(job.id, 100, f"s{claims.index(True)}")  # the winner's retry finds its own claim
    assert 110 < await store.ttl(stream_key(job.id)) <= 120
