"""The teacher-call journal on a real SQLite file."""

import sqlite3

from loopkit.journal import Journal, call_key

MESSAGES = [{"role": "user", "content": "2 + 2?"}]


def test_key_depends_on_every_part_and_not_on_dict_order():
    key = call_key("hf", "m", MESSAGES, {"temperature": 0.7, "seed": 1})
    assert key == call_key("hf", "m", MESSAGES, {"seed": 1, "temperature": 0.7})
    assert len(key) == 64
    others = {
        call_key("litellm", "m", MESSAGES, {"temperature": 0.7, "seed": 1}),
        call_key("hf", "m2", MESSAGES, {"temperature": 0.7, "seed": 1}),
        call_key("hf", "m", [{"role": "user", "content": "2 + 3?"}], {"temperature": 0.7, "seed": 1}),
        call_key("hf", "m", MESSAGES, {"temperature": 0.7, "seed": 2}),
    }
    assert key not in others and len(others) == 4


def test_a_recorded_call_survives_reopening(tmp_path):
    path = tmp_path / "teacher-journal.sqlite"
    journal = Journal(path)
    key = call_key("hf", "m", MESSAGES, {})
    assert journal.lookup(key) is None
    journal.record(key, backend="hf", model="m", request={"messages": MESSAGES}, response="#### 4",
                   prompt_tokens=5, completion_tokens=3, cost=0.25, latency=0.5)
    # Another connection sees the call at once: it was committed before record returned.
    other = Journal(path)
    entry = other.lookup(key)
    assert entry.response == "#### 4" and (entry.prompt_tokens, entry.completion_tokens) == (5, 3)
    assert entry.cost == 0.25 and entry.latency == 0.5 and entry.error is None and entry.created > 0
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    journal.close()
    other.close()


def test_failed_calls_are_kept_but_never_answer_a_lookup(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    key = call_key("hf", "m", MESSAGES, {})
    journal.record(key, backend="hf", model="m", request={}, error="TimeoutError: too slow")
    assert journal.lookup(key) is None
    journal.record(key, backend="hf", model="m", request={}, response="#### 4")
    assert journal.lookup(key).response == "#### 4"
    assert (journal.count(), journal.count(errors=True), journal.count(errors=False)) == (2, 1, 1)


def test_a_journal_from_before_retries_were_recorded_gains_the_column(tmp_path):
    path = tmp_path / "teacher-journal.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, backend TEXT NOT NULL, "
                   "model TEXT NOT NULL, request TEXT NOT NULL, response TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
                   "completion_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, "
                   "latency REAL NOT NULL DEFAULT 0, error TEXT, created REAL NOT NULL)")
        db.execute("INSERT INTO calls (key, backend, model, request, response, created) VALUES ('old', 'hf', 'm', '{}', 'x', 0)")
    journal = Journal(path)
    assert journal.lookup("old").retries == 0
    journal.record("new", backend="litellm", model="m", request={}, response="y", retries=3)
    assert journal.lookup("new").retries == 3
