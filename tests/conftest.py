"""Fixtures: a real redis-server on loopback, the app in a child process, call requests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from scripts.local_server import free_port, running_server

BOOK_MEETING_REQUEST = {
    "phone": "+14155550123",
    "name": "Alex",
    "product": "Brightside solar panels",
    "offer_pricing": "installation from 49 dollars a month, first month free",
    "target": "sme",
    "goal": "book_meeting",
    "style": "friendly",
    "booking_link": "https://example.com/book/brightside",
    "consent": True,
}


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def clean_redis(redis_server: RedisServer) -> RedisServer:
    redis.Redis(port=redis_server.port).flushall()
    return redis_server


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "TELEPHONY_PROVIDER": "none",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "SECRET_KEY": "test-secret-key",
        "LOG_JSON": "true",
        **overrides,
    }


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[str]:
    """The app in a child process with the in-process session store and TELEPHONY_PROVIDER=none."""
    tmp = tmp_path_factory.mktemp("server")
    with running_server(server_env(tmp, SILENCE_TIMEOUT_SECONDS="3"), log_path=tmp / "server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def redis_live_server(tmp_path_factory, redis_server) -> Iterator[str]:
    """The app in a child process on the real redis-server."""
    tmp = tmp_path_factory.mktemp("server-redis")
    env = server_env(tmp, REDIS_URL=redis_server.url, STREAM_START_TIMEOUT_SECONDS="2", SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url
