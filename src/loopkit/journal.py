"""The teacher-call journal: every call a teacher backend makes, in one SQLite file per run.

A call is keyed by the sha256 of its backend, model, rendered messages and sampling params, so a
re-run or resume answers a call it has already paid for from here instead of calling again. Each
call is committed on its own (WAL mode), so a crash or Ctrl-C never loses a completed call.
Failed calls are kept too (with their error); only an answered call answers a lookup. An answered
call whose reply cannot be used (a server that sent no choices, or ignored max_tokens) was paid for
all the same: it is kept as answered, with its ``problem``, and a resume replays that problem.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopkit.errors import RunDirError

FILENAME = "teacher-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    latency REAL NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    problem TEXT
);
CREATE INDEX IF NOT EXISTS calls_key ON calls (key);
"""


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with each lone surrogate (``"\\ud800"`` in a JSON reply) replaced by U+FFFD.

    No UTF-8 (SQLite, a JSON file) can hold a lone surrogate; a valid pair is one character once
    JSON is decoded. Every other character is kept.
    """
    return _SURROGATE.sub("\ufffd", text)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _stored(text: str | None) -> str | None:
    return None if text is None else storable(text)


def call_key(backend: str, model: str, messages: Any, params: dict[str, Any]) -> str:
    """The sha256 of what determines a call's answer: backend, model, rendered messages, sampling params."""
    text = "\x1f".join([backend, model, _canonical(messages), _canonical(params)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class JournalError(RunDirError):
    """A journal file that cannot be opened as one (not a database, damaged)."""


@dataclass(frozen=True)
class Entry:
    """One recorded call."""

    key: str
    response: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency: float  # seconds
    retries: int  # failed attempts before the answer
    error: str | None  # why the call failed (not answered)
    created: float  # Unix time
    problem: str | None = None  # why an answered call's reply cannot be used


class Journal:
    def __init__(self, path: str | Path) -> None:
        """Open (or create) the journal at ``path``; ``":memory:"`` keeps it for this process only."""
        self.path = str(path)
        existing = self.path != ":memory:" and Path(self.path).exists()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each write commits
            # A damaged file fails here, at open, not half-way through a round (quick_check reads every page: ~0.2 s per 100 MB).
            if existing and self._db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a process crash
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "retries" not in columns:  # a journal written before retries were recorded
                self._db.execute("ALTER TABLE calls ADD COLUMN retries INTEGER NOT NULL DEFAULT 0")
            if "problem" not in columns:  # a journal written before unusable replies were recorded
                self._db.execute("ALTER TABLE calls ADD COLUMN problem TEXT")
        except sqlite3.Error as exc:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR_WRITE"):
                raise  # a refused write, not a damaged file: the loop says which fix applies
            raise JournalError(
                f"{self.path} is not a usable teacher journal ({exc}); restore it, or move it away to resume without it "
                "(the unfinished round's teacher calls are then paid again)"
            ) from None

    def lookup(self, key: str) -> Entry | None:
        """The latest answered call with this key (its reply usable or not), or None."""
        row = self._db.execute(
            "SELECT key, response, prompt_tokens, completion_tokens, cost, latency, retries, error, created, problem "
            "FROM calls WHERE key = ? AND error IS NULL ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        return Entry(*row) if row else None

    def record(self, key: str, *, backend: str, model: str, request: Any, response: str | None = None,
               prompt_tokens: int = 0, completion_tokens: int = 0, cost: float = 0.0, latency: float = 0.0,
               retries: int = 0, error: str | None = None, problem: str | None = None) -> None:
        """Record one call (committed before this returns). ``request`` is the messages and params sent.

        Text is stored as ``storable`` makes it: a caller that uses a reply's text makes it storable
        first, so that a resume replays exactly the text it used.
        """
        self._db.execute(
            "INSERT INTO calls (key, backend, model, request, response, prompt_tokens, completion_tokens, cost, "
            "latency, retries, error, created, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, backend, model, storable(_canonical(request)), _stored(response), prompt_tokens, completion_tokens,
             cost, latency, retries, _stored(error), time.time(), _stored(problem)),
        )

    def count(self, errors: bool | None = None) -> int:
        """Calls recorded: all of them, only failed ones (``errors=True``) or only successful ones."""
        where = {None: "", True: " WHERE error IS NOT NULL", False: " WHERE error IS NULL"}[errors]
        return self._db.execute(f"SELECT COUNT(*) FROM calls{where}").fetchone()[0]

    def totals(self) -> dict[str, float]:
        """What the recorded calls cost: calls answered, calls failed, tokens and USD."""
        answered, failed, tokens, usd = self._db.execute(
            "SELECT COALESCE(SUM(error IS NULL), 0), COALESCE(SUM(error IS NOT NULL), 0), "
            "COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost), 0) FROM calls"
        ).fetchone()
        return {"calls": answered, "failed_calls": failed, "tokens": tokens, "usd": usd}

    def close(self) -> None:
        self._db.close()
