"""The teacher-call journal on a real SQLite file."""

import sqlite3

from loopkit.journal import Journal, call_key, storable

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
    assert journal.lookup("old").retries == 0 and journal.lookup("old").problem is None
    journal.record("new", backend="litellm", model="m", request={}, response="y", retries=3, problem="odd")
    assert journal.lookup("new").retries == 3 and journal.lookup("new").problem == "odd"


def test_an_answered_call_with_an_unusable_reply_answers_a_lookup_and_counts_as_paid(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    key = call_key("litellm", "m", MESSAGES, {})
    journal.record(key, backend="litellm", model="m", request={}, response="", prompt_tokens=3, completion_tokens=4,
                   problem="the reply has no choices")
    entry = journal.lookup(key)
    assert (entry.response, entry.problem, entry.error) == ("", "the reply has no choices", None)
    assert journal.totals() == {"calls": 1, "failed_calls": 0, "tokens": 7, "usd": 0.0}


def test_any_text_can_be_recorded_a_lone_surrogate_becomes_the_replacement_character(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    odd = "ok\ud800 \udfff\x00 \U0001F600"
    key = call_key("litellm", "m", [{"role": "user", "content": odd}], {})  # a prompt may hold one too
    journal.record(key, backend="litellm", model="m", request={"messages": odd}, response=odd, error=None)
    journal.record(key + "x", backend="litellm", model="m", request={}, error=odd)
    assert journal.lookup(key).response == storable(odd) == "ok\ufffd \ufffd\x00 \U0001F600"
    assert journal.count() == 2
