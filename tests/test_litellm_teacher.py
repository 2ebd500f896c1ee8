"""The litellm teacher against a real OpenAI-compatible HTTP server on 127.0.0.1, with litellm as the client.

The server (``loopkit.testing_server.ChatServer``, a stdlib ``ThreadingHTTPServer``) scripts its
answers: call 1 gets a new question, call 2 a worked answer ending in ``#### 42``. Faults are queued
one per request (``testing_server.FAULTS``): a 429 with Retry-After, a 500, an answer slower than the
teacher's timeout or dripping a byte at a time, bodies that are not JSON, and answers that are
off-spec (no choices, null content, a lone surrogate, 12 MB). litellm is in the ``test`` extra (``pip install -e '.[test]'``, or
``pip install 'loopkit[litellm]'``); without it these tests are skipped.
"""

import json
import math
import os
import socket
import sqlite3
import time

import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

from loopkit.cli import build_app  # noqa: E402
from loopkit.journal import FILENAME, Journal  # noqa: E402
from loopkit.records import Sample  # noqa: E402
from loopkit.tasks.base import Task  # noqa: E402
from loopkit.teachers.litellm import LiteLLMTeacher, TeacherCallError  # noqa: E402
from loopkit.testing_server import ANSWER, ChatServer  # noqa: E402

KEY_ENV = "LOOPKIT_TEST_LITELLM_KEY"
KEY = "sk-loopkit-test-0123456789abcdef"


@pytest.fixture
def server():
    with ChatServer() as chat:
        yield chat


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


class PlainTask(Task):
    def load(self, seed):
        raise NotImplementedError

    def check(self, sample, completion):
        return self.extract(completion) == sample.final


SEEDS = [Sample.create(f"What is {a} + {b}?", f"#### {a + b}", final=str(a + b)) for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]


def make_teacher(server, run_dir, **params):
    options = {"model": "openai/test-model", "api_base": server.url, "api_key_env": KEY_ENV, "timeout": 0.5,
               "max_retries": 3, "backoff": 0.01, "concurrency": 4, **params}
    teacher = LiteLLMTeacher(LiteLLMTeacher.Params(**options))
    teacher.bind(PlainTask())
    teacher.open(run_dir)
    return teacher


def journal_rows(run_dir):
    with sqlite3.connect(run_dir / FILENAME) as db:
        return db.execute("SELECT response, prompt_tokens, completion_tokens, cost, retries, error FROM calls").fetchall()


def test_faults_are_retried_unusable_answers_dropped_and_a_rerun_sends_nothing(server, api_key, tmp_path):
    server.faults = ["429", "500", "slow", "malformed"]
    server.unparseable = 1
    started = time.monotonic()
    generations = make_teacher(server, tmp_path).generate(SEEDS, round_no=1, random_seed=7)
    assert time.monotonic() - started < 20
    dropped = [g for g in generations if g.dropped]
    assert len(dropped) == 1 and dropped[0].dropped.startswith("no final answer")
    kept = [g.sample for g in generations if g.sample and not g.dropped]
    assert len(kept) == 3 and all(s.final == "42" and s.source == "litellm" for s in kept)
    # 8 calls answered (a question and an answer per seed); each fault cost one more request.
    assert server.requests == 8 + 4 and sum(g.calls for g in generations) == 8
    rows = journal_rows(tmp_path)
    assert len(rows) == 8 and all(error is None for *_, error in rows)
    assert sum(r[4] for r in rows) == 4  # the retries, counted per call
    assert all(prompt > 0 and completion > 0 and cost == 0.0 for _, prompt, completion, cost, _, _ in rows)
    assert server.authorization == {f"Bearer {KEY}"}

    again = make_teacher(server, tmp_path).generate(SEEDS, round_no=1, random_seed=7)  # a new process, same journal
    assert server.requests == 12  # nothing sent
    assert [g.sample for g in again] == [g.sample for g in generations]
    assert [g.calls for g in again] == [g.calls for g in generations]  # charged to the run once, as before


def test_every_call_samples_with_its_own_stable_seed_and_a_resume_sends_none_again(server, api_key, tmp_path):
    twice = SEEDS + SEEDS[:1]  # the same seed question twice still gets two different new questions
    for run in "abc":
        (tmp_path / run).mkdir()
    make_teacher(server, tmp_path / "a").generate(twice, round_no=1, random_seed=7)
    seeds = list(server.seeds)
    assert len(seeds) == 2 * len(twice) and None not in seeds and len(set(seeds)) == len(seeds)
    assert make_teacher(server, tmp_path / "a").generate(twice, round_no=1, random_seed=7)  # a resume: the journal answers
    assert server.seeds == seeds
    make_teacher(server, tmp_path / "b").generate(twice, round_no=1, random_seed=7)  # a fresh run: the same seeds again
    assert sorted(server.seeds[len(seeds):]) == sorted(seeds)
    judge = make_teacher(server, tmp_path / "c")
    judge.judge(SEEDS, ["1", "2", "3", "4"], random_seed=3)
    judge.referee(SEEDS, ["1", "2", "3", "4"], random_seed=3)
    graded = server.seeds[2 * len(seeds):]
    assert len(graded) == 4 + 8 and len(set(graded)) == len(graded) and not set(graded) & set(seeds)


def test_a_teacher_final_is_read_by_the_tasks_checker_and_one_it_cannot_read_is_dropped(server, api_key, tmp_path):
    from loopkit.tasks.jsonl import JsonlTask

    seeds = [Sample.create(f"What is {a} + 16?", f"#### {a + 16}", final=str(a + 16)) for a in range(12, 17)]
    server.answers = ["12 + 16 = 28\n#### 12 + 16 = 20", "So the total is 28 apples.", "#### $1,234.", "#### ", "No idea."]
    teacher = make_teacher(server, tmp_path, concurrency=1)  # one at a time: the answers arrive in the seeds' order
    numeric = tmp_path / "seeds.jsonl"
    numeric.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    teacher.bind(JsonlTask(JsonlTask.Params(seed_file=str(numeric), checker="numeric")))
    unreadable, flexible, marked, empty, none = teacher.generate(seeds, round_no=1, random_seed=7)
    assert unreadable.dropped == "no final answer: the numeric checker cannot read '12 + 16 = 20' as an answer"
    assert flexible.dropped is None and flexible.sample.final == "28" and flexible.sample.meta["final_reading"] == "flexible"
    assert flexible.sample.answer == "So the total is 28 apples.\n#### 28"  # trained with the final line it lacked
    assert marked.sample.final == "$1,234." and marked.sample.meta["final_reading"] == "marked"
    assert empty.dropped == "no final answer: the teacher's answer has nothing after '####'"
    assert none.dropped == ("no final answer: the teacher's answer has no '#### <answer>' line, "
                            "nor an answer its flexible reading finds")
    server.answers = ["#### Yes, because all cats are animals", "All cats are animals.\n#### yes"]
    teacher.bind(JsonlTask(JsonlTask.Params(seed_file=str(numeric), checker="boolean")))
    wordy, plain = teacher.generate(seeds[:2], round_no=2, random_seed=7)
    assert wordy.dropped == "no final answer: the boolean checker cannot read 'Yes, because all cats are animals' as an answer"
    assert plain.sample.final == "yes" and plain.sample.meta["final_reading"] == "marked"


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("fault, field", [("api_base", "teacher.params.api_base: the teacher's check call failed"),
                                          ("model", "teacher.params.model: the teacher's check call failed"),
                                          ("key", "teacher.params.api_key_env: the teacher's check call failed")])
def test_validate_check_teacher_calls_the_real_backend_once_and_names_the_wrong_field(
        server, api_key, write_recipe, fault, field):
    server.models = {"test-model"}
    teacher = {"model": "openai/test-model", "api_base": server.url, "api_key_env": KEY_ENV, "backoff": 0.01,
               "max_retries": 1, "timeout": 5}
    args = ["validate", str(write_recipe()), "--check-teacher", "--set", "teacher.name=litellm"]
    right = CliRunner().invoke(build_app(), [*args, "--set", f"teacher.params={json.dumps(teacher)}"])
    assert right.exit_code == 0, right.output
    shown = " ".join(right.output.split())
    assert "teacher check: litellm teacher openai/test-model answered the check call" in shown
    assert "in no journal and charged to no run" in shown
    assert server.requests == 1 and server.seeds  # one real call
    wrong = {"api_base": {"api_base": _closed_port()}, "model": {"model": "openai/no-such-model"}}.get(fault, {})
    if fault == "key":
        server.faults = ["401"]
    result = CliRunner().invoke(build_app(), [*args, "--set", f"teacher.params={json.dumps({**teacher, **wrong})}"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {field}") and KEY not in line, line


def test_run_check_teacher_is_journaled_and_charged_and_the_procedural_teacher_has_nothing_to_check(
        server, api_key, write_recipe, tmp_path):
    server.unparseable = 10_000  # nothing kept: no training, so the test stays quick
    out = tmp_path / "runs"
    result = CliRunner().invoke(build_app(), [
        "run", str(write_recipe()), "-o", str(out), "--check-teacher", "--set", "loop.rounds=1",
        "--set", "selector.name=random", "--set", "teacher.name=litellm", "--set", "teacher.params.model=openai/test-model",
        "--set", f"teacher.params.api_base={server.url}", "--set", f"teacher.params.api_key_env={KEY_ENV}"])
    assert result.exit_code == 0, result.output
    assert "journaled and charged to this run" in " ".join(result.output.split())
    (run,) = out.iterdir()
    assert Journal(run / FILENAME).count() == server.requests == 1 + 12  # the check, then a question and an answer per seed
    summary = json.loads((run / "summary.json").read_text())
    assert [r["teacher_calls"] for r in summary["rounds"]] == [1, 13]
    procedural = CliRunner().invoke(build_app(), ["validate", str(write_recipe()), "--check-teacher"])
    assert procedural.exit_code == 0 and "teacher reasoning-gym: nothing to check (it makes no calls)" in procedural.output


def test_retry_after_is_honoured_instead_of_the_backoff(server, api_key, tmp_path):
    server.faults = ["429"]
    teacher = make_teacher(server, tmp_path, backoff=30)  # a backoff this long would time the test out
    started = time.monotonic()
    (completion,) = teacher.complete([[{"role": "user", "content": "Answer: 6 x 7"}]], [teacher.sampling(1)])
    assert 0.1 <= time.monotonic() - started < 5
    assert completion.text == ANSWER and completion.retries == 1 and server.requests == 2


def test_cost_comes_from_the_offline_cost_map(server, api_key, tmp_path):
    teacher = make_teacher(server, tmp_path, model="openai/gpt-4o-mini")
    (c,) = teacher.complete([[{"role": "user", "content": "Answer: 6 x 7 please"}]], [teacher.sampling(1)])
    prices = litellm.model_cost["gpt-4o-mini"]
    expected = c.prompt_tokens * prices["input_cost_per_token"] + c.completion_tokens * prices["output_cost_per_token"]
    assert (c.prompt_tokens, c.completion_tokens) == (5, len(ANSWER.split()))
    assert c.cost == pytest.approx(expected) and c.cost > 0


def test_a_call_that_keeps_failing_is_an_error_after_its_retries_and_journaled(server, api_key, tmp_path):
    server.faults = ["500"] * 10
    teacher = make_teacher(server, tmp_path, max_retries=2)
    with pytest.raises(TeacherCallError, match="failed after 2 retries: InternalServerError"):
        teacher.generate(SEEDS[:1], round_no=1, random_seed=7)
    assert server.requests == 3
    (row,) = journal_rows(tmp_path)
    assert row[0] is None and "after 2 retries" in row[5] and KEY not in row[5]


def test_the_answered_calls_of_a_failed_batch_are_kept(server, api_key, tmp_path):
    server.faults = ["ok", "500"]  # one at a time: the first question is answered, the second fails for good
    with pytest.raises(TeacherCallError, match="failed after 0 retries"):
        make_teacher(server, tmp_path, concurrency=1, max_retries=0).generate(SEEDS[:2], round_no=1, random_seed=7)
    assert [r[5] is None for r in journal_rows(tmp_path)] == [True, False]
    generations = make_teacher(server, tmp_path).generate(SEEDS[:2], round_no=1, random_seed=7)
    assert server.requests == 2 + 1 + 2  # the failed question again, then both answers
    assert [g.calls for g in generations] == [2, 2] and all(g.sample.final == "42" for g in generations)
    assert server.duplicates == 0  # the question answered before the failure was not paid for again


def test_concurrency_is_bounded(server, api_key, tmp_path):
    server.delay = 0.2
    teacher = make_teacher(server, tmp_path, concurrency=2)
    prompts = [[{"role": "user", "content": f"Answer: {i} x 7"}] for i in range(6)]
    started = time.monotonic()
    assert [c.text for c in teacher.complete(prompts, [teacher.sampling(1)] * len(prompts))] == [ANSWER] * 6
    assert server.peak == 2 and 0.6 <= time.monotonic() - started < 10


def test_an_unreachable_api_base_is_a_clear_error_after_the_retries(api_key, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    teacher = make_teacher(type("Down", (), {"url": f"http://127.0.0.1:{port}/v1"}), tmp_path, max_retries=1)
    with pytest.raises(TeacherCallError, match=f"openai/test-model at http://127.0.0.1:{port}/v1 failed after 1 retries: .*Connection error"):
        teacher.generate(SEEDS[:1], round_no=1, random_seed=7)


def test_a_missing_api_key_variable_is_one_line_before_any_request(server, write_recipe, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = CliRunner().invoke(build_app(), [
        "run", str(write_recipe()), "-o", str(tmp_path / "runs"), "--set", "teacher.name=litellm",
        "--set", "teacher.params.model=openai/test-model", "--set", f"teacher.params.api_base={server.url}",
        "--set", f"teacher.params.api_key_env={KEY_ENV}",
    ])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith("Error:") and f"environment variable {KEY_ENV} is not set" in line, line
    assert server.requests == 0


def test_a_one_round_loop_completes_and_the_key_is_in_no_file_of_the_run(server, api_key, write_recipe, tmp_path):
    server.faults = ["429", "500", "malformed"]
    server.unparseable = 2
    out = tmp_path / "runs"
    result = CliRunner().invoke(build_app(), [
        "run", str(write_recipe()), "-o", str(out), "--set", "loop.rounds=1", "--set", "teacher.name=litellm",
        "--set", "teacher.params.model=openai/test-model", "--set", f"teacher.params.api_base={server.url}",
        "--set", f"teacher.params.api_key_env={KEY_ENV}", "--set", "teacher.params.backoff=0.01",
        "--set", "teacher.params.timeout=5", "--set", "loop.score_offspring=true",
    ])
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    (run,) = out.iterdir()
    dropped = [json.loads(line) for line in (run / "round-001" / "dropped.jsonl").read_text().splitlines()]
    assert sum(d["reason"].startswith("no final answer") for d in dropped) == 2
    assert len((run / "round-001" / "synthetic.jsonl").read_text().splitlines()) == 6 - len(dropped)
    # the fidelity pass scores every question the teacher wrote: the student's own loss needs no teacher answer
    fidelity = [json.loads(line) for line in (run / "round-001" / "fidelity.jsonl").read_text().splitlines()]
    assert len(fidelity) == 6 - sum(d["question"] is None for d in dropped)
    assert sum(not f["kept"] for f in fidelity) == sum(d["question"] is not None for d in dropped) >= 2
    assert all(f["offspring_own_loss"] > 0 and f["seed_own_loss"] > 0 for f in fidelity)
    journal = Journal(run / FILENAME)
    assert journal.count() == 12 and journal.count(errors=True) == 0  # a question and an answer per seed
    assert server.requests == 12 + 3
    assert server.authorization == {f"Bearer {KEY}"}  # the key was used ...
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == FILENAME for p in files)
    for path in files:  # ... and written nowhere
        assert KEY.encode() not in path.read_bytes(), path


def test_rounds_that_keep_nothing_are_reported_and_stop_the_run_resumably_in_one_line(server, api_key, write_recipe, tmp_path):
    server.unparseable = 10_000  # every answer lacks its final line, as a small model's did under the default prompt
    out = tmp_path / "runs"
    args = ["run", str(write_recipe()), "-o", str(out), "--set", "loop.rounds=3", "--set", "selector.name=random",
            "--set", "teacher.name=litellm", "--set", "teacher.params.model=openai/test-model",
            "--set", f"teacher.params.api_base={server.url}", "--set", f"teacher.params.api_key_env={KEY_ENV}"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 1, result.output
    shown = " ".join(result.output.split())  # as the terminal wraps it
    no_final = "no final answer: the teacher's answer has no '#### <answer>' line"
    assert f"with 0 synthetic samples; kept 0 of 6 (dropped: 6 x {no_final})" in shown and "round 1 of 3: accuracy 0.0%" in shown
    assert "warning: round 2 dropped 6 of its 6 samples" in shown
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: rounds 1-2 kept none of their samples (6 x no final answer") and "answer_template" in error
    assert "loop.stop_after_empty_rounds" in error
    (run,) = out.iterdir()
    assert [p.name for p in sorted(run.glob("round-*"))] == ["round-000", "round-001", "round-002"]  # none after the stop
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == error.removeprefix("Error: ") and summary["rounds"][2]["drop_reasons"] == {no_final: 6}
    server.unparseable = 0  # the teacher fixed: the run continues where it stopped
    resumed = CliRunner().invoke(build_app(), ["run", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert "round 3 of 3: accuracy" in resumed.output and "kept 6 of 6" in resumed.output


@pytest.mark.parametrize("selector, signal, calls_per_seed", [("llm-judge", "judge_score", 1), ("lion", "referee_gap", 2)])
def test_the_api_teacher_judges_for_the_selector_and_every_call_is_charged(server, api_key, tmp_path, selector, signal, calls_per_seed):
    from loopkit.testing import run_recipe

    overrides = ["loop.rounds=1", f"selector.name={selector}", "teacher.name=litellm",
                 "teacher.params={model: openai/test-model, api_key_env: " + KEY_ENV + ", backoff: 0.01, timeout: 5, "
                 f"api_base: '{server.url}'}}"]
    result = run_recipe(tmp_path, *overrides)
    run = result.run_dir.path
    signals = [json.loads(line) for line in (run / "round-001" / "pool_signals.jsonl").read_text().splitlines()]
    pool = len(signals)
    scores = [s[signal] for s in signals]
    assert all(isinstance(x, float) and x == x for x in scores) and len(set(scores)) > 1  # parsed, and they differ
    metrics = json.loads((run / "round-001" / "metrics.json").read_text())
    assert metrics["selector_teacher_calls"] == calls_per_seed * pool  # the seeds have reference answers: no own-answer calls
    assert result.rows[-1]["teacher_calls"] == calls_per_seed * pool + 2 * 6
    assert Journal(run / FILENAME).count() == server.requests == result.rows[-1]["teacher_calls"]
    assert result.rows[-1]["teacher_tokens"] == Journal(run / FILENAME).totals()["tokens"] > 0


def test_a_key_the_backend_echoes_is_redacted_from_every_file_and_message(server, api_key, write_recipe, tmp_path):
    server.echo_key = True
    out = tmp_path / "runs"
    result = CliRunner().invoke(build_app(), [
        "run", str(write_recipe()), "-o", str(out), "--set", "loop.rounds=1", "--set", "teacher.name=litellm",
        "--set", "teacher.params={model: openai/test-model, api_key_env: " + KEY_ENV + f", api_base: '{server.url}'}}",
    ])
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    (run,) = out.iterdir()
    synthetic = (run / "round-001" / "synthetic.jsonl").read_text()
    assert "you sent Bearer ***" in synthetic  # the echo was kept, the key masked
    for path in (p for p in run.rglob("*") if p.is_file()):
        assert KEY.encode() not in path.read_bytes(), path


def test_a_literal_key_in_a_recipe_is_refused(write_recipe):
    result = CliRunner().invoke(build_app(), [
        "validate", str(write_recipe()), "--set", "teacher.name=litellm",
        "--set", "teacher.params={model: openai/test-model, api_key: sk-live-123456}",
    ])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "teacher.params.api_key: a recipe must not hold a secret" in line and "api_key_env" in line
    assert "sk-live-123456" not in line


# -- servers that misbehave ----------------------------------------------------------------------

OFF_SPEC = {  # fault -> the problem its (answered, paid) reply is journaled and dropped with
    "no-choices": "the reply has no choices",
    "parts": "the reply's content is a list of parts, not text",
    "null-content": "the reply has no text (content: null, finish_reason: stop)",
    "no-message": "the reply's choice has no message",
}
ASK = [[{"role": "user", "content": "Answer: 6 x 7"}]]


def test_off_spec_replies_are_paid_calls_dropped_with_their_reason_and_never_sent_again(server, api_key, tmp_path):
    server.faults = list(OFF_SPEC)  # the four question calls
    generations = make_teacher(server, tmp_path).generate(SEEDS, round_no=1, random_seed=7)
    assert sorted(g.dropped for g in generations) == sorted(f"unusable reply to the question call: {p}" for p in OFF_SPEC.values())
    assert server.requests == 4 and [g.calls for g in generations] == [1] * 4  # no retry, no answer call
    with sqlite3.connect(tmp_path / FILENAME) as db:
        rows = db.execute("SELECT error, problem, prompt_tokens FROM calls").fetchall()
    assert sorted(p for _, p, _ in rows) == sorted(OFF_SPEC.values()) and all(e is None and n > 0 for e, _, n in rows)

    again = make_teacher(server, tmp_path).generate(SEEDS, round_no=1, random_seed=7)  # a resume: the journal answers
    assert [g.dropped for g in again] == [g.dropped for g in generations] and server.requests == 4


def test_an_unusable_reply_grades_nan_and_an_unusable_own_answer_costs_no_referee_call(server, api_key, tmp_path):
    teacher = make_teacher(server, tmp_path, concurrency=1)  # one at a time: the faults meet the calls in order
    server.faults = ["null-content"]
    judged = teacher.judge(SEEDS[:2], ["#### 3", "#### 7"], random_seed=1)
    with sqlite3.connect(tmp_path / FILENAME) as db:
        (grade,) = [reply for (reply,) in db.execute("SELECT response FROM calls") if reply]  # the usable one
    assert math.isnan(judged.scores[0]) and judged.scores[1] == float(grade.removeprefix("Score: ")) and judged.calls == 2

    unanswered = [Sample.create(s.question) for s in SEEDS[:2]]  # the referee writes its own answers
    server.faults, before = ["no-choices"], server.requests
    refereed = teacher.referee(unanswered, ["#### 3", "#### 7"], random_seed=1)
    assert math.isnan(refereed.scores[0]) and not math.isnan(refereed.scores[1])
    assert refereed.calls == server.requests - before == 2 + 2  # own answers, then both orders for the second seed only


def test_timeout_is_a_deadline_for_the_whole_attempt_so_a_dripping_server_cannot_hold_a_call(server, api_key, tmp_path):
    server.faults, server.drip = ["drip"], 0.5  # every read gets a byte in time; the whole reply would take minutes
    teacher = make_teacher(server, tmp_path, timeout=1.5)
    started = time.monotonic()
    (completion,) = teacher.complete(ASK, [teacher.sampling(1)])
    assert 1.5 <= time.monotonic() - started < 10
    assert completion.text == ANSWER and completion.retries == 1 and server.answered.total() == 1

    server.faults = ["drip"] * 2
    with pytest.raises(TeacherCallError, match=r"failed after 1 retries: no complete reply within timeout=1.5 s$"):
        make_teacher(server, tmp_path, timeout=1.5, max_retries=1).complete(ASK, [teacher.sampling(2)])


def test_a_body_that_is_not_json_is_retried_and_when_it_persists_fails_in_one_short_line(server, api_key, tmp_path):
    server.faults = ["html", "plain", "html-502", "malformed", "text-type"]  # the right JSON as text/plain is read
    (completion,) = make_teacher(server, tmp_path, max_retries=4).complete(ASK, [{"max_tokens": 64}])
    assert (completion.text, completion.retries, completion.problem) == (ANSWER, 4, None)

    server.faults = ["html"] * 3
    with pytest.raises(TeacherCallError) as failed:
        make_teacher(server, tmp_path, max_retries=2).complete(ASK, [{"max_tokens": 64}])
    message = str(failed.value)
    assert "\n" not in message and len(message) < 600, message
    assert "failed after 2 retries" in message and "502 Bad Gateway" in message


def test_a_call_refused_for_good_is_not_retried_nor_taken_for_an_answer(server, api_key, tmp_path):
    server.faults = ["401"]  # a wrong key: nothing was answered, nothing paid
    with pytest.raises(TeacherCallError, match="failed: AuthenticationError: .*Incorrect API key provided$"):
        make_teacher(server, tmp_path).generate(SEEDS[:1], round_no=1, random_seed=7)
    assert server.requests == 1 and journal_rows(tmp_path)[0][5] is not None
    (generation,) = make_teacher(server, tmp_path).generate(SEEDS[:1], round_no=1, random_seed=7)  # the key fixed: sent again
    assert generation.sample.final == "42" and server.requests == 3


def cli_run(server, recipe, out, *overrides):
    params = "{model: openai/test-model, api_key_env: " + KEY_ENV + f", backoff: 0.01, timeout: 30, api_base: '{server.url}'}}"
    return CliRunner().invoke(build_app(), ["run", str(recipe), "-o", str(out), "--set", "loop.rounds=1",
                                            "--set", "teacher.name=litellm", "--set", f"teacher.params={params}", *overrides])


def resume_last_round(run):
    """``run --resume`` as after an interruption before round 1 was marked complete."""
    (run / "round-001" / "COMPLETE").unlink()
    return CliRunner().invoke(build_app(), ["run", "--resume", str(run)])


def round_files(run):
    return {name: (run / "round-001" / name).read_text(encoding="utf-8") for name in ("synthetic.jsonl", "dropped.jsonl", "eval.jsonl")}


def test_a_run_against_a_misbehaving_server_keeps_every_answered_call_and_a_resume_replays_it_exactly(
        server, api_key, write_recipe, tmp_path):
    # The six question calls come first, then the answer calls of the four questions that survive.
    server.faults = ["no-choices", "parts", "surrogate", "ok", "ok", "ok", "null-content", "huge", "no-message", "html"]
    out = tmp_path / "runs"
    result = cli_run(server, write_recipe(), out)
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    files = round_files(run)
    reasons = sorted(json.loads(line)["reason"] for line in files["dropped.jsonl"].splitlines())
    assert reasons == sorted([
        *(f"unusable reply to the question call: {OFF_SPEC[f]}" for f in ("no-choices", "parts")),
        *(f"unusable reply to the answer call: {OFF_SPEC[f]}" for f in ("null-content", "no-message")),
        "unusable reply to the answer call: the reply has 11,999,982 characters, more than max_tokens=512 tokens "
        "can hold; the server ignores max_tokens",
    ])
    assert len(files["synthetic.jsonl"].splitlines()) == 1
    assert "\ufffd" in files["synthetic.jsonl"] + files["dropped.jsonl"]  # the lone surrogate, replaced
    journal = Journal(run / FILENAME)
    assert (journal.count(), journal.count(errors=True)) == (10, 0)  # every answered call, whatever it held
    assert server.requests == 11  # the HTML page was retried; everything else was answered once

    resumed = resume_last_round(run)
    assert resumed.exit_code == 0, resumed.output
    assert server.requests == 11 and server.duplicates == 0  # replayed from the journal: nothing paid twice
    assert round_files(run) == files  # the same text, the same drops: as if never interrupted


@pytest.mark.parametrize("key", ["test"])
def test_a_short_common_key_masks_nothing_and_the_run_resumes_and_reports(server, write_recipe, tmp_path, monkeypatch, key):
    """Local servers are often given EMPTY or test: no byte of loopkit's own files may change for it."""
    monkeypatch.setenv(KEY_ENV, key)
    server.echo_key = True
    out = tmp_path / "runs"
    result = cli_run(server, write_recipe(), out)
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    assert recipe["name"] == "tiny-test" and recipe["task"]["params"]["test_size"] == 12
    assert f"you sent Bearer {key}" in (run / "round-001" / "synthetic.jsonl").read_text()  # too short to mask
    for path in (p for p in run.rglob("*") if p.is_file()):
        assert b"***" not in path.read_bytes(), path

    report = CliRunner().invoke(build_app(), ["report", str(run)])
    assert report.exit_code == 0, report.output
    before, files = server.requests, round_files(run)
    resumed = resume_last_round(run)
    assert resumed.exit_code == 0, resumed.output
    assert server.requests == before and round_files(run) == files


@pytest.mark.parametrize("fault", ["500", "closed"])
def test_several_endpoints_share_the_calls_fail_over_and_resume_from_the_journal(api_key, tmp_path, fault):
    """api_base as a list: litellm's Router spreads the calls, a failing endpoint is failed over, and a resume
    answers every call from the journal, whichever endpoint answered it."""
    seeds = [Sample.create(f"What is {a} + 1?", f"#### {a + 1}", final=str(a + 1)) for a in range(8)]
    with ChatServer() as good, ChatServer() as bad:
        if fault == "closed":
            bad.stop()  # nothing listens on its port any more: connection refused
        else:
            bad.faults = ["500"] * 1000
        generations = make_teacher(good, tmp_path, api_base=[bad.url, good.url]).generate(seeds, round_no=1, random_seed=7)
        assert [g.calls for g in generations] == [2] * 8 and not any(g.dropped for g in generations)
        assert len(good.answered) == 16 and good.duplicates == 0  # every call answered once, by the good endpoint
        if fault == "500":
            assert bad.requests > 0  # the failing endpoint was tried
        sent = good.requests
        again = make_teacher(good, tmp_path, api_base=[good.url, bad.url]).generate(seeds, round_no=1, random_seed=7)
        assert [g.sample for g in again] == [g.sample for g in generations]
        assert good.requests == sent and good.duplicates == 0  # the resume sent nothing


def test_a_list_of_endpoints_is_checked():
    with pytest.raises(ValueError, match="lists an endpoint twice"):
        LiteLLMTeacher.Params(model="openai/m", api_base=["http://a/v1", "http://a/v1"])
    with pytest.raises(ValueError, match="lists no endpoint"):
        LiteLLMTeacher.Params(model="openai/m", api_base=[])
    assert LiteLLMTeacher.Params(model="openai/m", api_base=["http://a/v1"]).api_base == "http://a/v1"


def test_the_teacher_reports_each_call_as_it_is_answered_and_the_journal_s_at_once(server, api_key, tmp_path):
    moves = []
    with (teacher := make_teacher(server, tmp_path, concurrency=1)).reporting(moves.append):
        teacher.generate(SEEDS, round_no=1, random_seed=7)
    assert moves == [1] * 8  # four questions, then four answers, one by one
    moves.clear()
    with (again := make_teacher(server, tmp_path)).reporting(moves.append):
        again.generate(SEEDS, round_no=1, random_seed=7)
    assert moves == [4, 4] and server.requests == 8  # a resume: the journal answers each batch at once
