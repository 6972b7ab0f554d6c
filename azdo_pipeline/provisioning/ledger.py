"""The provisioning ledger: what was received, batched, started and finished, keyed by request id.

One small SQLite file beside the inbox (WAL mode, so the sensor and several runs can use it at
once). It is what makes each request happen exactly once:

- `receive` inserts a request under its id once; the same id again is a duplicate (same content)
  or a conflict (different content), never a second request.
- `form_batches` gives each received request to one batch, in arrival order (`seq`). A request
  whose membership (`order_key`) has an earlier request still unfinished in another batch waits,
  so requests touching one membership are carried out in arrival order whatever the batching.
- A run claims its batch, marks each request `started` before acting and records the outcome
  right after, in its own transaction. A run killed between the two leaves the request `started`;
  `requeue` gives it to a new batch, whose run checks the service before acting (the executor
  does), so the call is not repeated and the request not lost.
- `record_outcome` writes only over an unfinished request: a finished one is never done again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RECEIVED, BATCHED, STARTED, DONE = "received", "batched", "started", "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    request_id   TEXT NOT NULL UNIQUE,
    org          TEXT NOT NULL,
    action       TEXT NOT NULL,
    order_key    TEXT NOT NULL,   -- requests sharing it run in arrival order
    body         TEXT NOT NULL,   -- the request, canonical JSON
    digest       TEXT NOT NULL,   -- of the canonical JSON: same id + other digest = conflict
    file_name    TEXT,
    received_at  TEXT NOT NULL,
    batch_id     TEXT,
    state        TEXT NOT NULL,
    run_id       TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    status       TEXT,
    outcome      TEXT             -- the current outcome row, JSON
);
CREATE INDEX IF NOT EXISTS requests_state ON requests(state, org, seq);
CREATE INDEX IF NOT EXISTS requests_batch ON requests(batch_id);
CREATE INDEX IF NOT EXISTS requests_status ON requests(org, status);
CREATE TABLE IF NOT EXISTS batches (
    batch_id     TEXT PRIMARY KEY,
    org          TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    run_id       TEXT,
    worker_pid   INTEGER,
    worker_host  TEXT,
    claimed_at   TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Entry:
    """One request as the ledger holds it."""

    seq: int
    request_id: str
    org: str
    action: str
    order_key: str
    body: dict[str, Any]
    digest: str
    file_name: str | None
    received_at: str
    batch_id: str | None
    state: str
    run_id: str | None
    started_at: str | None
    finished_at: str | None
    status: str | None
    outcome: dict[str, Any] | None


@dataclass(frozen=True)
class Received:
    """What `receive` did: 'new', 'duplicate' (same id, same content) or 'conflict'."""

    kind: str
    entry: Entry


@dataclass(frozen=True)
class Batch:
    batch_id: str
    org: str
    attempt: int
    request_ids: tuple[str, ...]
    run_id: str | None = None
    worker_pid: int | None = None
    worker_host: str | None = None
    unfinished: int = 0


class ClaimError(RuntimeError):
    """The batch is claimed by another run."""


_ENTRY_COLS = ("seq, request_id, org, action, order_key, body, digest, file_name, received_at, batch_id, "
               "state, run_id, started_at, finished_at, status, outcome")


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(seq=row[0], request_id=row[1], org=row[2], action=row[3], order_key=row[4],
                 body=json.loads(row[5]), digest=row[6], file_name=row[7], received_at=row[8],
                 batch_id=row[9], state=row[10], run_id=row[11], started_at=row[12], finished_at=row[13],
                 status=row[14], outcome=json.loads(row[15]) if row[15] else None)


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # autocommit mode: every write below is its own explicit transaction.
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        self._db.execute("PRAGMA busy_timeout=60000")
        for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            self._db.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- intake --------------------------------------------------------------------------
    def receive(self, *, request_id: str, org: str, action: str, order_key: str, body: dict[str, Any],
                digest: str, file_name: str | None) -> Received:
        with self._tx() as db:
            row = db.execute(f"SELECT {_ENTRY_COLS} FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None:
                existing = _entry(row)
                return Received("duplicate" if existing.digest == digest else "conflict", existing)
            db.execute("INSERT INTO requests (request_id, org, action, order_key, body, digest, file_name, "
                       "received_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (request_id, org, action, order_key, json.dumps(body, sort_keys=True), digest,
                        file_name, _now(), RECEIVED))
            row = db.execute(f"SELECT {_ENTRY_COLS} FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            return Received("new", _entry(row))

    def form_batches(self, max_batch: int, *, skip_orgs: Collection[str] = ()) -> list[Batch]:
        """Give waiting requests to new batches (per organization, arrival order, at most
        `max_batch` each), holding back any whose membership has an earlier unfinished request
        in another batch. Organizations in `skip_orgs` keep theirs waiting (the sensor skips those
        whose batch is still running: their runs go one at a time, so the next batch gathers all
        that arrived meanwhile into one run)."""
        with self._tx() as db:
            blocked = {r[0] for r in db.execute(
                "SELECT DISTINCT order_key FROM requests WHERE batch_id IS NOT NULL AND state != ?", (DONE,))}
            waiting = db.execute("SELECT seq, request_id, org, order_key FROM requests WHERE state = ? "
                                 "ORDER BY seq", (RECEIVED,)).fetchall()
            per_org: dict[str, list[tuple[int, str]]] = {}
            skip = {o.lower() for o in skip_orgs}
            for seq, rid, org, key in waiting:
                if key in blocked or org.lower() in skip:
                    continue
                per_org.setdefault(org, []).append((seq, rid))
            batches = []
            for org, items in per_org.items():
                for i in range(0, len(items), max_batch):
                    chunk = items[i:i + max_batch]
                    batches.append(self._new_batch(db, org, chunk, attempt=1))
            return batches

    def _new_batch(self, db: sqlite3.Connection, org: str, chunk: Sequence[tuple[int, str]],
                   attempt: int) -> Batch:
        batch_id = f"{org}-{chunk[0][0]:08d}-{attempt}"
        if db.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)).fetchone():
            batch_id = f"{batch_id}-{chunk[-1][0]:08d}"
        db.execute("INSERT INTO batches (batch_id, org, attempt, created_at) VALUES (?, ?, ?, ?)",
                   (batch_id, org, attempt, _now()))
        db.executemany("UPDATE requests SET batch_id = ?, state = CASE WHEN state = ? THEN ? ELSE state END "
                       "WHERE seq = ?", [(batch_id, RECEIVED, BATCHED, seq) for seq, _ in chunk])
        return Batch(batch_id, org, attempt, tuple(rid for _, rid in chunk), unfinished=len(chunk))

    def open_batches(self) -> list[Batch]:
        """Batches with requests not yet finished, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT b.batch_id, b.org, b.attempt, b.run_id, b.worker_pid, b.worker_host, COUNT(r.seq), "
                "MIN(r.seq) FROM batches b JOIN requests r ON r.batch_id = b.batch_id AND r.state != ? "
                "GROUP BY b.batch_id ORDER BY MIN(r.seq)", (DONE,)).fetchall()
            ids = {r[0]: tuple(x[0] for x in self._db.execute(
                "SELECT request_id FROM requests WHERE batch_id = ? ORDER BY seq", (r[0],))) for r in rows}
        return [Batch(r[0], r[1], r[2], ids[r[0]], run_id=r[3], worker_pid=r[4], worker_host=r[5], unfinished=r[6])
                for r in rows]

    def requeue(self, batch_id: str) -> Batch | None:
        """Give the unfinished requests of a batch whose run ended (or died) to a new batch."""
        with self._tx() as db:
            old = db.execute("SELECT org, attempt FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if old is None:
                return None
            chunk = db.execute("SELECT seq, request_id FROM requests WHERE batch_id = ? AND state != ? "
                               "ORDER BY seq", (batch_id, DONE)).fetchall()
            if not chunk:
                return None
            return self._new_batch(db, old[0], chunk, attempt=old[1] + 1)

    # ---- carrying out --------------------------------------------------------------------
    def claim(self, batch_id: str, run_id: str, pid: int, host: str) -> list[Entry]:
        """Claim a batch for a run; its requests in arrival order (finished ones included)."""
        with self._tx() as db:
            row = db.execute("SELECT run_id FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                raise ClaimError(f"batch {batch_id} is not in the ledger; batches are made by the "
                                 "provisioning sensor from the inbox")
            if row[0] not in (None, run_id):
                raise ClaimError(f"batch {batch_id} was already claimed by run {row[0]}; the sensor gives its "
                                 "unfinished requests to a new batch when that run ends")
            db.execute("UPDATE batches SET run_id = ?, worker_pid = ?, worker_host = ?, claimed_at = ? "
                       "WHERE batch_id = ?", (run_id, pid, host, _now(), batch_id))
            rows = db.execute(f"SELECT {_ENTRY_COLS} FROM requests WHERE batch_id = ? ORDER BY seq",
                              (batch_id,)).fetchall()
        return [_entry(r) for r in rows]

    def mark_started(self, request_id: str, run_id: str) -> bool:
        """Before acting; False when the request is already finished (never act on it again)."""
        with self._tx() as db:
            cur = db.execute("UPDATE requests SET state = ?, run_id = ?, started_at = COALESCE(started_at, ?) "
                             "WHERE request_id = ? AND state != ?", (STARTED, run_id, _now(), request_id, DONE))
            return cur.rowcount == 1

    def record_outcome(self, request_id: str, status: str, outcome: dict[str, Any]) -> bool:
        """The outcome of a request that was not finished; False (and nothing written) otherwise."""
        with self._tx() as db:
            cur = db.execute("UPDATE requests SET state = ?, status = ?, outcome = ?, finished_at = ? "
                             "WHERE request_id = ? AND state != ?",
                             (DONE, status, json.dumps(outcome, sort_keys=True, default=str), _now(),
                              request_id, DONE))
            return cur.rowcount == 1

    def update_outcome(self, request_id: str, status: str, outcome: dict[str, Any]) -> None:
        """Replace a finished request's current outcome (pending -> confirmed / unconfirmed)."""
        with self._tx() as db:
            db.execute("UPDATE requests SET status = ?, outcome = ? WHERE request_id = ? AND state = ?",
                       (status, json.dumps(outcome, sort_keys=True, default=str), request_id, DONE))

    # ---- reading ---------------------------------------------------------------------------
    def get(self, request_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_ENTRY_COLS} FROM requests WHERE request_id = ?",
                                   (request_id,)).fetchone()
        return _entry(row) if row else None

    def entries(self, org: str | None = None, *, status: str | None = None) -> list[Entry]:
        sql, args = f"SELECT {_ENTRY_COLS} FROM requests WHERE 1=1", []
        if org is not None:
            sql += " AND org = ?"
            args.append(org)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [_entry(r) for r in rows]

    def pending_orgs(self) -> list[str]:
        """Organizations with outcomes still `pending` (Entra changes not yet seen in Azure DevOps)."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT DISTINCT org FROM requests WHERE status = 'pending' ORDER BY org")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
