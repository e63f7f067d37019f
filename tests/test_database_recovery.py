"""The database engine recovers by itself once a fault clears: no request fails after it, no restart."""

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from control_api.listening_address import listening_sockets
from control_api.main import create_app
from models.database import make_engine
from tests.support import PostgresServer, RecordingDialer, make_settings


@contextmanager
def read_only(database: Path) -> Iterator[None]:
    """The database file immutable (chattr +i): not even root can write it, as after a bad remount."""
    subprocess.run(["chattr", "+i", str(database)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)


def _new_workspace(client: TestClient, name: str) -> int:
    return client.post("/workspaces", json={"name": name}).status_code


def _at_once(client: TestClient, prefix: str, count: int = 8) -> list[int]:
    """Concurrent requests: the pool opens new connections for them, as under real traffic."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda n: _new_workspace(client, f"{prefix}-{n}"), range(count)))


def test_sqlite_read_only_for_a_while_then_writable_serves_again_without_a_restart(tmp_path):
    database = tmp_path / "calls.db"
    app = create_app(make_settings(f"sqlite:///{database}"), dialer=RecordingDialer())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert _new_workspace(client, "before") == 201
        with read_only(database):
            during = _at_once(client, "during")
        after = [_new_workspace(client, f"after-{n}") for n in range(8)] + _at_once(client, "after-together")

    assert any(code >= 500 for code in during), during  # connections opened before the fault may still write
    assert after == [201] * 16


def test_postgresql_stopped_and_restarted_serves_again_without_a_restart(restartable_postgres: PostgresServer):
    url = restartable_postgres.url(restartable_postgres.create_database())
    with TestClient(create_app(make_settings(url), dialer=RecordingDialer()), raise_server_exceptions=False) as client:
        assert _new_workspace(client, "before") == 201
        restartable_postgres.stop()
        try:
            during = _new_workspace(client, "during")
        finally:
            restartable_postgres.start()
        after = [_new_workspace(client, f"after-{n}") for n in range(5)]

    assert during >= 500
    assert after == [201] * 5


def test_looking_for_the_listening_sockets_keeps_the_databases_locks(tmp_path: Path):
    """Start-up's socket scan must not drop SQLite's locks: another process's reader would then delete
    the WAL under this process (writes lost, SIGBUS on the shared memory), as a crash-replay test saw."""
    database = tmp_path / "calls.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as db:
            db.exec(text("CREATE TABLE t (x INTEGER)"))
            db.exec(text("INSERT INTO t VALUES (1)"))
            db.commit()
        with engine.connect() as held:  # a pooled connection, open as in a running server
            held.execute(text("SELECT x FROM t")).all()
            with socket.create_server(("127.0.0.1", 0)) as listener:
                assert listener.getsockname() in listening_sockets()
            reader = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT x FROM t').fetchall(); c.close()"
            subprocess.run([sys.executable, "-c", reader, str(database)], check=True)
            assert Path(f"{database}-wal").exists() and Path(f"{database}-shm").exists()
            held.execute(text("INSERT INTO t VALUES (2)"))
            held.commit()
        count = "import sqlite3, sys; print(len(sqlite3.connect(sys.argv[1]).execute('SELECT x FROM t').fetchall()))"
        reread = subprocess.run([sys.executable, "-c", count, str(database)], check=True, capture_output=True, text=True)
        assert reread.stdout.strip() == "2"
    finally:
        engine.dispose()
