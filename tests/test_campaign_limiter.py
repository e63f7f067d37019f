"""A campaign's pace on a real Redis, shared by two clients as by two worker processes; the clock is set."""

import pytest

from call_queue.campaign_limiter import CampaignLimits, LocalCampaignLimiter, RedisCampaignLimiter

T0 = 1_781_110_800.0  # an instant; every test moves from here


@pytest.fixture()
async def two_clients(clean_redis):
    clients = [RedisCampaignLimiter(clean_redis.url, lease_seconds=420) for _ in range(2)]
    yield clients
    for client in clients:
        await client.aclose()


async def test_two_clients_together_grant_no_more_dials_a_minute_than_the_rate(two_clients):
    limits = CampaignLimits(calls_per_minute=5, max_concurrent_calls=100)

    # Every 3 s for a minute: a dial every 12 s is granted, whichever client asks.
    grants = [await two_clients[i % 2].acquire(7, f"call-{i}", limits, T0 + i * 3) for i in range(20)]

    assert [i * 3 for i, grant in enumerate(grants) if grant.granted] == [0, 12, 24, 36, 48]
    refused = [grant for grant in grants if not grant.granted]
    assert {grant.limit for grant in refused} == {"rate"}
    assert all(0 < grant.retry_in <= 12 for grant in refused)


@pytest.mark.parametrize("limiter", ["redis", "local"])
async def test_dials_are_spaced_evenly_not_a_burst_at_the_start_of_the_minute(limiter, clean_redis):
    client = RedisCampaignLimiter(clean_redis.url, 420) if limiter == "redis" else LocalCampaignLimiter(420)
    limits = CampaignLimits(calls_per_minute=60, max_concurrent_calls=100)
    try:
        # Sixty calls due at once: the first goes now, each of the others is told to come back
        # one second after the last dial, and does.
        now, dialed, room = T0, [], None
        for i in range(60):
            if i == 30:
                room = await client.room(2, limits, now, horizon=3.5)
            grant = await client.acquire(2, f"call-{i}", limits, now)
            while not grant.granted:
                assert grant.limit == "rate" and grant.retry_in <= 1.0
                now += grant.retry_in
                grant = await client.acquire(2, f"call-{i}", limits, now)
            dialed.append(now - T0)
        assert await client.room(2, limits, now + 0.5, horizon=0.4) == 0  # the minute's sixty are spent
    finally:
        await client.aclose()

    assert room == 3  # after the 30th dial: slots at +1, +2 and +3 s
    assert dialed == pytest.approx([float(i) for i in range(60)])


async def test_the_window_slides_a_dial_frees_sixty_seconds_after_it_was_made(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=2, max_concurrent_calls=100)
    assert (await first.acquire(1, "a", limits, T0)).granted
    assert (await second.acquire(1, "b", limits, T0 + 30)).granted

    refused = await first.acquire(1, "c", limits, T0 + 59)
    assert (refused.granted, refused.retry_in) == (False, pytest.approx(1.0))  # "a" leaves the window, "b" is 30 s old
    assert (await first.acquire(1, "c", limits, T0 + 60.001)).granted
    assert not (await second.acquire(1, "d", limits, T0 + 60.002)).granted  # "b" still counts until T0 + 90


async def test_two_clients_never_hold_more_calls_at_once_than_the_cap(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=100, max_concurrent_calls=2)

    grants = [await two_clients[i % 2].acquire(3, f"call-{i}", limits, T0 + i) for i in range(6)]
    assert sum(grant.granted for grant in grants) == 2
    assert {grant.limit for grant in grants if not grant.granted} == {"concurrency"}

    holder = next(f"call-{i}" for i, grant in enumerate(grants) if grant.granted)
    await second.release(3, holder)  # that call ended
    assert (await first.acquire(3, "next", limits, T0 + 7)).granted
    assert not (await second.acquire(3, "one-more", limits, T0 + 8)).granted


async def test_the_slot_of_a_worker_that_died_frees_itself_when_its_lease_runs_out(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=100, max_concurrent_calls=1)
    assert (await first.acquire(4, "dead-workers-call", limits, T0)).granted  # never released

    assert not (await second.acquire(4, "waiting", limits, T0 + 419)).granted
    assert (await second.acquire(4, "waiting", limits, T0 + 421)).granted


async def test_acquiring_again_for_the_same_call_takes_nothing_more(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=1, max_concurrent_calls=1)

    assert (await first.acquire(5, "call", limits, T0)).granted
    assert (await second.acquire(5, "call", limits, T0 + 1)).granted  # the same call, delivered again
    assert await first.room(5, limits, T0 + 1) == 0


async def test_a_refund_gives_back_the_dial_and_the_slot(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=1, max_concurrent_calls=1)
    assert (await first.acquire(6, "refused-by-policy", limits, T0)).granted

    await second.refund(6, "refused-by-policy")

    assert await first.room(6, limits, T0) == 1
    assert (await second.acquire(6, "another", limits, T0)).granted


async def test_room_is_what_both_limits_leave_and_takes_nothing(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=10, max_concurrent_calls=3)
    await first.acquire(8, "a", limits, T0)

    assert await second.room(8, limits, T0) == 0  # the next dial is 6 s away
    assert await second.room(8, limits, T0, horizon=20) == 2  # at +6 and +12; the third slot is "a"'s
    assert await second.room(8, limits, T0, horizon=20) == 2
    await second.release(8, "a")
    assert await first.room(8, limits, T0, horizon=20) == 3
    assert await first.room(8, CampaignLimits(calls_per_minute=1, max_concurrent_calls=3), T0, horizon=20) == 0


async def test_campaigns_do_not_share_limits(two_clients):
    first, second = two_clients
    limits = CampaignLimits(calls_per_minute=1, max_concurrent_calls=1)

    assert (await first.acquire(10, "x", limits, T0)).granted
    assert (await second.acquire(11, "y", limits, T0)).granted


async def test_the_limiters_keys_expire(two_clients, clean_redis):
    import redis

    await two_clients[0].acquire(12, "x", CampaignLimits(5, 5), T0)

    client = redis.Redis(port=clean_redis.port)
    assert all(client.pttl(key) > 0 for key in client.keys("campaign:12:*"))


async def test_the_in_process_limiter_answers_like_the_redis_one():
    limiter = LocalCampaignLimiter(lease_seconds=420)
    limits = CampaignLimits(calls_per_minute=2, max_concurrent_calls=1)

    assert (await limiter.acquire(1, "a", limits, T0)).granted
    busy = await limiter.acquire(1, "b", limits, T0 + 1)
    await limiter.release(1, "a")
    too_soon = await limiter.acquire(1, "b", limits, T0 + 2)
    second = await limiter.acquire(1, "b", limits, T0 + 30)
    await limiter.release(1, "b")
    over_rate = await limiter.acquire(1, "c", limits, T0 + 31)

    assert (busy.granted, busy.limit) == (False, "concurrency")
    assert (too_soon.granted, too_soon.limit, too_soon.retry_in) == (False, "rate", pytest.approx(28.0))
    assert second.granted
    assert (over_rate.granted, over_rate.limit, over_rate.retry_in) == (False, "rate", pytest.approx(29.0))


@pytest.mark.parametrize("limiter", ["redis", "local"])
async def test_runs_waiting_together_each_get_their_own_slot(limiter, clean_redis):
    client = RedisCampaignLimiter(clean_redis.url, 420) if limiter == "redis" else LocalCampaignLimiter(420)
    limits = CampaignLimits(calls_per_minute=30, max_concurrent_calls=100)  # a dial every 2 s
    try:
        # Six runs at the same instant, slots kept for up to 10 s ahead.
        first = [await client.acquire(3, f"run-{i}", limits, T0, reserve_within=9) for i in range(6)]
        assert await client.room(3, limits, T0, horizon=20) == 6  # at +10, +12 ... +20 s, after the five kept
        # Each comes back at the time it was given, and is granted without taking another slot.
        later = [
            await client.acquire(3, f"run-{i}", limits, T0 + grant.retry_in, reserve_within=9)
            for i, grant in enumerate(first[1:4], 1)
        ]
    finally:
        await client.aclose()

    assert first[0].granted
    assert [grant.retry_in for grant in first[1:5]] == pytest.approx([2.0, 4.0, 6.0, 8.0])
    assert (first[5].granted, first[5].retry_in) == (False, pytest.approx(10.0))  # too far ahead: nothing kept
    assert all(grant.granted for grant in later)
