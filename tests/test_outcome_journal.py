"""Every finished call is journaled before the database: an outage or a crash at any point loses
neither the outcome nor an after-call effect (an opt-out above all), and nothing is applied twice."""

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from models.context import ContextInstance
from models.database import make_engine
from models.domain import ChatMessage, Lead
from models.enums import LeadStage
from models.outcome_journal import OutcomeJournal
from models.tables import Call
from scripts.local_server import running_server
from scripts.simulate_call import wait_until_placed
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script
from tests.support import BOOK_MEETING_REQUEST, PostgresServer, server_env


async def _create(http: httpx.AsyncClient, phone: str) -> tuple[dict, ContextInstance]:
    created = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))
    assert created.status_code in (201, 202), created.text
    call = created.json()
    placed = await wait_until_placed(http, call["id"])  # the queue places it after the 202
    context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}")).json())
    return call, context


def _caller(base: str, call: dict, context: ContextInstance) -> SimulatedCaller:
    return SimulatedCaller(
        base.replace("http", "ws") + "/ws", call["stream"]["call_id"], call["stream"]["token"], caller_script("opt_out", context)
    )


def _stored(database_url: str, call_id: str, phone: str) -> tuple[int, int, Lead | None, int]:
    """(rows for the call, its messages, the lead, the transcript's length) as the database holds them."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as db:
            rows = db.exec(select(func.count()).select_from(Call).where(Call.id == call_id)).one()
            messages = db.exec(select(func.count()).select_from(ChatMessage).where(ChatMessage.call_id == call_id)).one()
            lead = db.exec(select(Lead).where(Lead.phone == phone)).first()
            call = db.get(Call, call_id)
            return rows, messages, lead, len(call.transcript) if call else -1
    finally:
        engine.dispose()


async def _eventually_opted_out(database_url: str, call_id: str, phone: str, seconds: float = 90) -> tuple:
    for _ in range(int(seconds / 0.5)):
        try:
            rows, messages, lead, turns = await asyncio.to_thread(_stored, database_url, call_id, phone)
            # The transcript and the lead's stage are stored in one commit after the call's row; on
            # SQLite each of _stored's reads sees the latest commit, so wait for both to be seen.
            if rows and messages and lead is not None and lead.stage is LeadStage.SUPPRESSED:
                return rows, messages, lead, turns
        except Exception:  # the database is still coming back
            pass
        await asyncio.sleep(0.5)
    return await asyncio.to_thread(_stored, database_url, call_id, phone)


@pytest.mark.parametrize("crash_point", ["after_journal", "after_database"])
async def test_a_process_killed_mid_write_leaves_the_outcome_and_the_opt_out_applied_once(tmp_path: Path, crash_point):
    phone = "+14155550190"
    env = server_env(tmp_path, SILENCE_TIMEOUT_SECONDS="3")
    database_url = env["DATABASE_URL"]
    with running_server({**env, "TEST_ONLY_CRASH_POINT": crash_point}, log_path=tmp_path / "first.log") as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            call, context = await _create(http, phone)
        await asyncio.wait_for(_caller(base, call, context).run(), 90)
        for _ in range(100):  # the process SIGKILLs itself at the crash point
            try:
                httpx.get(f"{base}/health", timeout=1)
            except httpx.HTTPError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the server never reached the crash point")
    assert "test_only_crash" in (tmp_path / "first.log").read_text()

    with running_server(env, log_path=tmp_path / "second.log") as base:
        rows, messages, lead, turns = await _eventually_opted_out(database_url, call["id"], phone)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            again = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))
            shown = (await http.get(f"/calls/{call['id']}")).json()

    assert rows == 1
    assert shown["outcome"] == "opted_out"
    assert lead is not None and lead.stage is LeadStage.SUPPRESSED and lead.opted_out_at is not None
    assert messages == turns > 0  # the transcript stored once, not once per replay
    assert (again.status_code, again.json().get("reason_code")) == (422, "opted_out")


async def test_an_opt_out_spoken_while_the_database_is_down_is_applied_when_it_returns(
    tmp_path: Path, restartable_postgres: PostgresServer
):
    phone = "+14155550191"
    database_url = restartable_postgres.url(restartable_postgres.create_database())
    env = server_env(tmp_path, DATABASE_URL=database_url, SILENCE_TIMEOUT_SECONDS="3", OUTCOME_JOURNAL_REPLAY_SECONDS="1")
    with running_server(env, log_path=tmp_path / "server.log") as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            call, context = await _create(http, phone)
            caller = asyncio.create_task(_caller(base, call, context).run())
            await asyncio.sleep(1)  # the stream is up: the session store carries the call from here
            await asyncio.to_thread(restartable_postgres.stop)
            try:
                await asyncio.wait_for(caller, 90)
                await asyncio.sleep(3)  # the outcome write fails and its retries give up
            finally:
                await asyncio.to_thread(restartable_postgres.start)
            # No restart: the running server replays its journal once the database is back.
            rows, messages, lead, turns = await _eventually_opted_out(database_url, call["id"], phone)
            again = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))

    assert rows == 1
    assert lead is not None and lead.stage is LeadStage.SUPPRESSED and lead.opted_out_at is not None
    assert messages == turns > 0
    assert (again.status_code, again.json().get("reason_code")) == (422, "opted_out")
    assert "outcome_db_write_failed" in (tmp_path / "server.log").read_text()


def test_an_entry_held_by_a_process_that_died_is_replayed_at_once(tmp_path: Path):
    dead = OutcomeJournal(tmp_path)
    dead.holder = f"{socket.gethostname()}:{2**22 + 7}:0000"  # no such process
    dead.append("call-1", "{}", "{}", lease_seconds=3600)
    live = OutcomeJournal(tmp_path)
    live.append("call-2", "{}", "{}", lease_seconds=3600)  # this process is on it: left alone

    assert [entry.call_id for entry in live.claim_unconfirmed()] == ["call-1"]
    assert live.claim_unconfirmed() == []  # leased now


def test_a_calls_later_entry_waits_for_its_earlier_one(tmp_path: Path):
    journal = OutcomeJournal(tmp_path)
    first = journal.append("call-1", "{}", "{}")
    journal.release(first, "database unavailable")
    second = journal.append("call-1", "{}", "{}")
    journal.release(second, "behind")

    assert second.behind and not first.behind
    assert [entry.seq for entry in journal.claim_unconfirmed()] == [first.seq]


def test_a_finished_call_supersedes_its_in_progress_entry_in_one_step(tmp_path: Path):
    journal = OutcomeJournal(tmp_path)
    in_progress = journal.append("call-1", "{}", "{}", lease_seconds=3600)
    final = journal.append("call-1", "{}", "{}", supersedes=in_progress)

    assert not final.behind
    assert journal.unconfirmed_count() == 1
