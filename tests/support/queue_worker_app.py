"""The call queue's Celery app as the subprocess tests run it: the real tasks, a dial that only records.

`celery -A tests.support.queue_worker_app worker|beat`, with REDIS_URL and DATABASE_URL in the environment.
Each dial appends its call id to the Redis list DIALS_KEY, so a test counts the calls placed.
"""

from functools import cache

import redis.asyncio as aioredis
from celery import Celery

from call_queue.celery_app import create_celery_app
from call_queue.runner import DialOrder
from models.log_config import configure_logging
from models.settings import get_settings

DIALS_KEY = "test:dials"


async def record_dial(order: DialOrder) -> None:
    client = aioredis.Redis.from_url(get_settings().redis_url)
    try:
        await client.rpush(DIALS_KEY, order.call_id)
    finally:
        await client.aclose()


@cache
def _app() -> Celery:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_celery_app(settings, record_dial)


def __getattr__(name: str) -> Celery:
    # `app` is built when celery asks for it, so the tests can import this module without a broker set.
    if name == "app":
        return _app()
    raise AttributeError(name)
