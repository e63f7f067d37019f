"""POST /calls under a database write lock (issue 11, case 3): the request answers 503 with Retry-After
within CALL_INTAKE_TIMEOUT_SECONDS, the event loop keeps serving (a live call's media, /health) while
it waits, and a retry with the same Idempotency-Key once the lock is gone gets one call."""

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg

from models.context import ContextInstance
from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script
from tests.support import server_env


class WriteLock:
    """A real write lock held by another connection: SQLite's BEGIN IMMEDIATE, PostgreSQL's table locks."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def __enter__(self) -> "WriteLock":
        if self.db_url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(self.db_url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg.connect(self.db_url)
            # Reads go on; every write to these tables waits.
            self.conn.execute("LOCK TABLE lead, policy_decision, call_attempt IN EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc) -> None:
        self.conn.rollback()
        self.conn.close()


async def live_call(base_url: str) -> SimulatedCaller:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        created = (await http.post("/calls", json=DEMO_REQUEST)).json()
        placed = await wait_until_placed(http, created["id"])
        context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}")).json())
    stream = created["stream"]
    return SimulatedCaller(
        base_url.replace("http", "ws", 1) + "/ws", stream["call_id"], stream["token"], caller_script("happy", context)
    )


def test_a_locked_database_answers_503_while_a_live_call_goes_on(tmp_path, db_url):
    env = server_env(tmp_path, DATABASE_URL=db_url, CALL_INTAKE_TIMEOUT_SECONDS="2", SILENCE_TIMEOUT_SECONDS="4")
    request = {**DEMO_REQUEST, "phone": "+14155550177"}
    with running_server(env, log_path=tmp_path / "server.log") as base_url:

        async def scenario() -> tuple[httpx.Response, bool, dict, int, int]:
            caller = await live_call(base_url)
            running = asyncio.create_task(caller.run())
            await asyncio.sleep(4)  # the call is under way: the agent has greeted, the caller answers
            heard_before = len(caller.agent_track) + len(caller.caller_track)
            with WriteLock(db_url), ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    httpx.post, f"{base_url}/calls", json=request, headers={"Idempotency-Key": "lock-test"}, timeout=30
                )
                await asyncio.sleep(0.5)
                health = await asyncio.to_thread(httpx.get, f"{base_url}/health", timeout=30)
                served_while_waiting = health.status_code == 200 and not waiting.done()
                answer = await asyncio.to_thread(waiting.result)
                heard_during = len(caller.agent_track) + len(caller.caller_track)
            report = await running
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                for _ in range(100):
                    final = (await http.get(f"/calls/{report.call_id}")).json()
                    if final["status"] in ("completed", "failed"):
                        break
                    await asyncio.sleep(0.1)
            return answer, served_while_waiting, final, heard_before, heard_during

        answer, served_while_waiting, final, heard_before, heard_during = asyncio.run(scenario())
        retried = httpx.post(f"{base_url}/calls", json=request, headers={"Idempotency-Key": "lock-test"}, timeout=30)
        again = httpx.post(f"{base_url}/calls", json=request, headers={"Idempotency-Key": "lock-test"}, timeout=30)

    assert answer.status_code == 503, answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= 5
    assert served_while_waiting  # the event loop was free while the request waited on the lock
    assert heard_during > heard_before  # the live call's audio kept flowing meanwhile
    assert (final["status"], final["outcome"]) == ("completed", "meeting_booked")
    assert retried.status_code == 202 and again.json()["id"] == retried.json()["id"]
