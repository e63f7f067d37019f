"""Run the app in a child process on a free loopback port, and the real Redis and PostgreSQL servers it
uses, for the demo, the benchmarks, the fault suite and the tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving_child(
    argv: list[str], base_url: str, what: str, env: dict[str, str], log_path: Path | None, startup_timeout: float
) -> Iterator[subprocess.Popen]:
    """A child process serving HTTP at base_url: ready once its /health answers 200, stopped on exit."""
    log_file = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode} before it was ready (log: {log_path})")
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {startup_timeout}s")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log_file.close()


def _uvicorn(factory: str, port: int) -> list[str]:
    # As the Procfile runs it: no per-message deflate on /ws (compressing base64 audio costs CPU per
    # frame and saves little on a datacenter link).
    serve = ["--factory", factory, "--host", "127.0.0.1", "--port", str(port), "--ws-per-message-deflate", "false"]
    return [sys.executable, "-m", "uvicorn", *serve, "--log-level", "warning"]


@contextlib.contextmanager
def running_server(
    env: dict[str, str] | None = None, log_path: Path | None = None, startup_timeout: float = 60, workers: int = 1
) -> Iterator[str]:
    """`workers` > 1: uvicorn's process manager with that many web processes on the one port."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    child_env = {**os.environ, "PUBLIC_BASE_URL": base_url, **(env or {})}
    argv = [*_uvicorn("control_api.main:app_factory", port), *(["--workers", str(workers)] if workers > 1 else [])]
    with serving_child(argv, base_url, "server", child_env, log_path, startup_timeout):
        yield base_url


@dataclass
class VoicePool:
    """The Procfile's `voice` processes on one loopback port: the pool's launcher and its processes."""

    base_url: str
    supervisor_pid: int
    worker_pids: list[int]


@contextlib.contextmanager
def running_voice_pool(
    env: dict[str, str], workers: int, log_path: Path | None = None, startup_timeout: float = 90
) -> Iterator[VoicePool]:
    """`workers` voice processes serving /ws on one port (needs REDIS_URL in env); ready once each answers."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "voice_worker.pool", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with serving_child(argv, base_url, "voice pool", {**os.environ, **env}, log_path, startup_timeout) as supervisor:
        # /health answered once: one process is up. Each new connection lands on whichever accepts it;
        # asking until every process has answered is how to know they all are.
        seen: set[int] = set()
        deadline = time.monotonic() + startup_timeout
        while len(seen) < workers:
            with contextlib.suppress(httpx.HTTPError):
                seen.add(httpx.get(f"{base_url}/health", timeout=2).json()["pid"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {workers} voice processes answered (log: {log_path})")
            time.sleep(0.05)
        yield VoicePool(base_url, supervisor.pid, sorted(seen))


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
            raise RuntimeError("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
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


POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
POSTGRES_OS_USER = "pgtest"


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in POSTGRES_BIN_DIRS if Path(f"{d}/{name}").exists()), None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql); the database tests need a real server"
        )
    return found


def _unprivileged_user() -> dict[str, int]:
    """postgres refuses to run as root: as root, run it as a system user made for the tests."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_OS_USER], check=True)
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        as_user = _unprivileged_user()
        data = self.workdir / "data"
        if as_user:
            os.chown(self.workdir, as_user["user"], as_user["group"])
        if not data.exists():  # a restart after stop() keeps the databases
            subprocess.run(
                [_postgres_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                **as_user,
            )
        self.process = subprocess.Popen(
            # No unix socket (-k ''), loopback only; durability is not what these tests are about.
            [
                _postgres_binary("postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "postgres.log", "wb"),  # noqa: SIM115  (the server outlives this call)
            cwd=self.workdir,
            **as_user,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(self.workdir / 'postgres.log').read_text()[-2000:]}") from None
                time.sleep(0.1)

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            self.process.wait(timeout=30)
            self.process = None
