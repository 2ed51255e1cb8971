"""Durable records in SQLite: the review office's trusted-party registry and access-grant
ledger, and (in the NSA's own file, on the NSA's own host) its briefing inbox.

Every write is idempotent on its natural key, so an activity retried after a crash
between "written" and "reported" records nothing twice.
"""

from __future__ import annotations

import sqlite3
import threading
import tomllib
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from domain.sectors import Sector
from infra.sealing import FieldSeal, private_file

# Seconds a call waits for a lock outside an activity (setup, tests); see RecordStore._busy_timeout.
BUSY_TIMEOUT = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS trusted_parties (
    partner_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    sector     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('approved', 'suspended', 'revoked')),
    note       TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS grants (
    review_id  TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    grant_id   TEXT NOT NULL UNIQUE,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (review_id, run_id, partner_id)
);
CREATE TABLE IF NOT EXISTS briefings (
    review_id    TEXT PRIMARY KEY,
    briefing     TEXT NOT NULL,
    delivered_at TEXT NOT NULL
);
"""
# A partner is granted access to a review's model once, whatever run asks (a reset run, a refile): a
# refiled review is a new review only after a withdrawal, and none is accepted once granting starts.
ONCE_PER_REVIEW = "CREATE UNIQUE INDEX IF NOT EXISTS grants_once_per_review ON grants (review_id, partner_id)"


class RegisteredParty(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partner_id: str
    name: str
    sector: Sector
    status: str = "approved"
    note: str = ""


class Grant(BaseModel):
    review_id: str
    run_id: str = ""
    partner_id: str
    grant_id: str
    granted_at: datetime
    already_granted: bool


class _KeptConnection(sqlite3.Connection):
    """A thread's connection to one store, kept open from call to call. Opening and closing one per
    call cost about 0.5 ms of CPU a write here, most of it the checkpoint SQLite runs when the last
    connection to a WAL file closes. `close()`, which every call makes through `closing()`, only
    ends a transaction the call left open (none does today), so the next call starts clean."""

    def close(self) -> None:
        if self.in_transaction:
            self.rollback()


class RecordStore:
    """One SQLite file; a connection per thread (activities run on any thread of their queue's pool),
    kept open between calls."""

    def __init__(self, path: Path, seal: FieldSeal | None = None) -> None:
        self.path = Path(path)
        self._threads = threading.local()
        # Classified fields are sealed, and the file is its owner's alone (0600; -wal and -shm follow).
        private_file(self.path)
        self._seal = seal
        with closing(self._connect()) as db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(grants)")]
            if columns and "run_id" not in columns:
                # A ledger from before grants were keyed by run: kept aside, never reused.
                db.execute("ALTER TABLE grants RENAME TO grants_before_runs")
            db.executescript(SCHEMA)
            try:
                db.execute(ONCE_PER_REVIEW)
            except sqlite3.IntegrityError:
                # A ledger written before grants were once per review, holding a partner twice: kept
                # as it is (the audit shows it); `grant` still never adds a second one.
                pass
            db.execute("PRAGMA journal_mode=WAL")

    @property
    def seal(self) -> FieldSeal:
        """The payload keyring, as a field sealer: loaded when a classified field is first written or read."""
        if self._seal is None:
            self._seal = FieldSeal.from_key_directory()
        return self._seal

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection, its busy timeout set for this call (see `_busy_timeout`)."""
        db = getattr(self._threads, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, factory=_KeptConnection)
            self._threads.db = db
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout() * 1000)}")
        return db

    def _busy_timeout(self) -> float:
        """How long a call waits on a locked database: inside an activity, half its start-to-close
        timeout at most, so a blocked call fails and frees its thread before the activity is retried
        (each retry would otherwise hold one more thread, blocked, until the lock goes)."""
        if activity.in_activity():
            attempt = activity.info().start_to_close_timeout
            if attempt is not None:
                return min(BUSY_TIMEOUT, max(attempt.total_seconds() / 2, 0.05))
        return BUSY_TIMEOUT

    # -- trusted-party registry

    def load_registry(self, path: Path) -> int:
        data = tomllib.loads(Path(path).read_text())
        parties = [RegisteredParty.model_validate(p) for p in data.get("party", [])]
        with closing(self._connect()) as db:
            db.executemany(
                "INSERT INTO trusted_parties VALUES (?, ?, ?, ?, ?) ON CONFLICT(partner_id) DO UPDATE "
                "SET name=excluded.name, sector=excluded.sector, status=excluded.status, note=excluded.note",
                [(p.partner_id, p.name, p.sector.value, p.status, p.note) for p in parties],
            )
        return len(parties)

    def registered_party(self, partner_id: str) -> RegisteredParty | None:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT partner_id, name, sector, status, note FROM trusted_parties WHERE partner_id = ?",
                (partner_id,),
            ).fetchone()
        if row is None:
            return None
        return RegisteredParty(partner_id=row[0], name=row[1], sector=row[2], status=row[3], note=row[4])

    # -- access grants

    def grant(self, review_id: str, partner_id: str, run_id: str = "") -> Grant:
        """Record a grant, once per review and partner: a retry of the same run, a reset run or any
        other run of the review finds the first grant and gets it back (`already_granted`, with the run
        that granted it), never a second one."""
        now = datetime.now(UTC).isoformat()
        with closing(self._connect()) as db:
            cur = db.execute(
                "INSERT INTO grants (review_id, run_id, partner_id, grant_id, granted_at) SELECT ?, ?, ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM grants WHERE review_id = ? AND partner_id = ?)",
                (review_id, run_id, partner_id, uuid.uuid4().hex, now, review_id, partner_id),
            )
            inserted = cur.rowcount == 1
            row = db.execute(
                "SELECT grant_id, granted_at, run_id FROM grants WHERE review_id = ? AND partner_id = ? "
                "ORDER BY granted_at LIMIT 1",
                (review_id, partner_id),
            ).fetchone()
        return Grant(
            review_id=review_id,
            run_id=row[2],
            partner_id=partner_id,
            grant_id=row[0],
            granted_at=datetime.fromisoformat(row[1]),
            already_granted=not inserted,
        )

    def grants(self, review_id: str | None = None) -> list[Grant]:
        sql = "SELECT review_id, partner_id, grant_id, granted_at, run_id FROM grants"
        args: tuple[str, ...] = ()
        if review_id is not None:
            sql += " WHERE review_id = ?"
            args = (review_id,)
        with closing(self._connect()) as db:
            rows = db.execute(sql + " ORDER BY granted_at", args).fetchall()
        return [
            Grant(
                review_id=r[0],
                run_id=r[4],
                partner_id=r[1],
                grant_id=r[2],
                granted_at=datetime.fromisoformat(r[3]),
                already_granted=True,
            )
            for r in rows
        ]

    # -- NSA briefing inbox

    def deliver_briefing(self, review_id: str, briefing_json: str) -> datetime:
        now = datetime.now(UTC).isoformat()
        with closing(self._connect()) as db:
            db.execute(
                "INSERT INTO briefings VALUES (?, ?, ?) "
                "ON CONFLICT(review_id) DO UPDATE SET briefing=excluded.briefing",
                (review_id, self.seal.seal(briefing_json, "briefings", review_id), now),
            )
            row = db.execute("SELECT delivered_at FROM briefings WHERE review_id = ?", (review_id,)).fetchone()
        return datetime.fromisoformat(row[0])

    def briefing(self, review_id: str) -> str | None:
        """The briefing the NSA received for a review (its verdicts and rationales), unsealed."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT briefing FROM briefings WHERE review_id = ?", (review_id,)).fetchone()
        return None if row is None else self.seal.open(row[0], "briefings", review_id)
