"""The local journal of finished calls: written (fsynced) before the database, confirmed step by step.

A small SQLite file under OUTCOME_JOURNAL_DIR. Each finished call is one entry holding its record and
job; the after-call path marks each step it completed (the database write, then every hook by name)
and confirms the entry once all are done. What is left unconfirmed (the database was down, a hook
failed, the process died) is replayed from the first step not done, so every effect is applied once.

Entries are leased while a process works on them, so a replay never races the live path or another
process sharing the directory; a lease held by a process that died on this host is void at once.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_FILE = "outcomes.sqlite3"
# Long enough for the live path's database retries and hooks; a dead holder's lease is void sooner.
LEASE_SECONDS = 300.0
# Confirmed entries are kept a while for operators, then pruned.
KEEP_CONFIRMED_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    record TEXT NOT NULL,
    job TEXT NOT NULL,
    done TEXT NOT NULL DEFAULT '[]',
    confirmed_at REAL,
    holder TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_unconfirmed ON entries (confirmed_at, seq);
"""


@dataclass
class JournalEntry:
    seq: int
    call_id: str
    record: str
    job: str
    done: list[str] = field(default_factory=list)
    attempts: int = 0
    # An earlier entry of the same call is unconfirmed: this one must wait for it (order per call).
    behind: bool = False


def _holder_alive(holder: str | None, me: str) -> bool:
    """Whether the process that leased an entry may still be working on it."""
    if not holder:
        return False
    if holder == me:
        return True  # this process's live path is on it
    host, pid, _token = holder.split(":", 2)
    my_host, my_pid, _ = me.split(":", 2)
    if host != my_host:
        return True  # another machine's process: only its lease's expiry tells
    if pid == my_pid:
        return False  # an earlier process that had this pid: it died
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutcomeJournal:
    def __init__(self, directory: Path | str, clock=time.time) -> None:
        self.path = Path(directory) / JOURNAL_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit is fsynced, so an entry the writer saw stored survives a crash.
            db.execute("PRAGMA synchronous=FULL")
            yield db

    def append(
        self, call_id: str, record: str, job: str, *, lease_seconds: float = LEASE_SECONDS, supersedes: JournalEntry | None = None
    ) -> JournalEntry:
        """Journal a call, leased to this process (it applies it right away, or holds it while the call runs).

        `supersedes`: an entry this one replaces (what to store had the process died mid-call), dropped
        in the same transaction, so a crash leaves exactly one of the two.
        """
        now = self._clock()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            if supersedes is not None:
                db.execute(
                    "UPDATE entries SET confirmed_at = ?, holder = NULL, last_error = 'superseded' WHERE seq = ?",
                    (now, supersedes.seq),
                )
            cursor = db.execute(
                "INSERT INTO entries (call_id, record, job, holder, lease_until, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, record, job, self.holder, now + lease_seconds, now),
            )
            assert cursor.lastrowid is not None
            earlier = db.execute(
                "SELECT 1 FROM entries WHERE call_id = ? AND seq < ? AND confirmed_at IS NULL LIMIT 1",
                (call_id, cursor.lastrowid),
            ).fetchone()
            db.execute("COMMIT")
            return JournalEntry(cursor.lastrowid, call_id, record, job, behind=earlier is not None)

    def mark_done(self, entry: JournalEntry, step: str) -> None:
        entry.done.append(step)
        with self._db() as db:
            db.execute("UPDATE entries SET done = ? WHERE seq = ?", (json.dumps(entry.done), entry.seq))

    def confirm(self, entry: JournalEntry) -> None:
        with self._db() as db:
            db.execute("UPDATE entries SET confirmed_at = ?, holder = NULL WHERE seq = ?", (self._clock(), entry.seq))

    def release(self, entry: JournalEntry, error: str) -> None:
        """Give an entry back after a failed step: the next replay takes it from there."""
        with self._db() as db:
            db.execute(
                "UPDATE entries SET holder = NULL, lease_until = 0, attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error[:500], entry.seq),
            )

    def claim_unconfirmed(self, limit: int = 100) -> list[JournalEntry]:
        """Lease the unconfirmed entries nobody is working on, oldest first, only the first of each call."""
        now = self._clock()
        claimed: list[JournalEntry] = []
        waiting_calls: set[str] = set()
        with self._db() as db:
            rows = db.execute(
                "SELECT seq, call_id, record, job, done, attempts, holder, lease_until FROM entries "
                "WHERE confirmed_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            for seq, call_id, record, job, done, attempts, holder, lease_until in rows:
                if call_id in waiting_calls:
                    continue  # the call's earlier entry comes first
                waiting_calls.add(call_id)
                if lease_until > now and _holder_alive(holder, self.holder):
                    continue
                taken = db.execute(
                    "UPDATE entries SET holder = ?, lease_until = ? WHERE seq = ? AND confirmed_at IS NULL "
                    "AND holder IS ? AND lease_until = ?",
                    (self.holder, now + LEASE_SECONDS, seq, holder, lease_until),
                )
                if taken.rowcount == 1:
                    claimed.append(JournalEntry(seq, call_id, record, job, json.loads(done), attempts))
        return claimed

    def unconfirmed_count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM entries WHERE confirmed_at IS NULL").fetchone()[0])

    def prune_confirmed(self) -> int:
        with self._db() as db:
            cursor = db.execute(
                "DELETE FROM entries WHERE confirmed_at IS NOT NULL AND confirmed_at < ?",
                (self._clock() - KEEP_CONFIRMED_SECONDS,),
            )
            return cursor.rowcount
