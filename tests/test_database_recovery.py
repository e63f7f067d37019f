"""The database engine recovers by itself once a fault clears: no request fails after it, no restart."""

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from control_api.main import create_app
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
