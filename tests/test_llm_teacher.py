"""LLM teachers: the two-call protocol, the journal, template validation, and the hf teacher on the tiny model."""

import json

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.journal import FILENAME, Journal
from loopkit.records import Sample
from loopkit.tasks.base import Task
from loopkit.teachers.llm import Completion, LLMTeacher
from loopkit.testing import run_recipe

TINY_TEACHER = [
    "teacher.name=hf",
    "teacher.params.model.name=tiny",
    "teacher.params.model.params={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}",
    "teacher.params.max_new_tokens=8",
]


class PlainTask(Task):
    def load(self, seed):
        raise NotImplementedError

    def check(self, sample, completion):
        return self.extract(completion) == sample.final


class Scripted(LLMTeacher):
    """A backend that writes "<seed> again?" as the new question and a fixed worked answer; counts calls."""

    backend = "scripted"
    model_id = "scripted-v1"

    def __init__(self, params=None, answer="2 + 2 = 4\n#### 4"):
        super().__init__(params)
        self.answer = answer
        self.sent: list[list] = []

    def complete(self, prompts, params, done=None):
        self.sent.append(prompts)
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            if text.startswith("Here is an example question"):
                seed = text.split("\n\n")[1]
                out.append(Completion(f"Question: {seed} again?", prompt_tokens=len(text), completion_tokens=3))
            else:
                out.append(Completion(self.answer, prompt_tokens=len(text), completion_tokens=4, cost=0.01))
        return out


SEEDS = [Sample.create("What is 2 + 2?", "#### 4", final="4"), Sample.create("What is 1 + 3?", "#### 4", final="4")]


def scripted(tmp_path, **kwargs):
    teacher = Scripted(**kwargs)
    teacher.bind(PlainTask())
    teacher.open(tmp_path)
    return teacher


def test_two_calls_per_seed_give_a_parsed_sample(tmp_path):
    teacher = scripted(tmp_path)
    generations = teacher.generate(SEEDS, round_no=1, random_seed=7)
    assert [g.calls for g in generations] == [2, 2] and all(g.dropped is None for g in generations)
    sample = generations[0].sample
    assert sample.question == "What is 2 + 2? again?"
    assert sample.answer == "2 + 2 = 4\n#### 4" and sample.final == "4"
    assert sample.source == "scripted" and sample.seed_id == SEEDS[0].id and sample.round == 1
    assert len(teacher.sent) == 2  # one batch per call of the protocol


def test_a_journaled_call_is_not_sent_again(tmp_path):
    first = scripted(tmp_path).generate(SEEDS, round_no=1, random_seed=7)
    again = scripted(tmp_path)  # a new process over the same run directory
    replayed = again.generate(SEEDS, round_no=1, random_seed=7)
    assert again.sent == []  # every call answered from the journal
    assert [g.sample for g in replayed] == [g.sample for g in first]
    assert [g.calls for g in replayed] == [2, 2]  # still charged to the run (once), but not sent
    journal = Journal(tmp_path / FILENAME)
    assert journal.count() == 4
    # Another round samples afresh: its calls have other keys.
    assert [g.calls for g in again.generate(SEEDS, round_no=2, random_seed=7)] == [2, 2]


def test_an_answer_without_a_final_line_is_dropped_with_its_reason(tmp_path):
    generations = scripted(tmp_path, answer="I think it is four.").generate(SEEDS[:1], round_no=1, random_seed=7)
    (g,) = generations
    assert g.dropped.startswith("no final answer") and g.calls == 2
    assert g.sample.question == "What is 2 + 2? again?"  # kept for the dropped record


@pytest.mark.parametrize(
    "template, message",
    [
        ("Write a question like {question} about {topic}", "unknown template variable {topic}; the variables are {answer}, {answer_format}, {question}"),
        ("Write a question like {question", "not a valid format string"),
        ("Write a question", "the template must contain {question}"),
    ],
)
def test_a_bad_template_is_a_one_line_recipe_error(write_recipe, template, message):
    result = CliRunner().invoke(build_app(), [
        "validate", str(write_recipe()), *[arg for o in TINY_TEACHER for arg in ("--set", o)],
        "--set", f"teacher.params.question_template={json.dumps(template)}",
    ])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "teacher.params.question_template:" in line and message in line, line


def test_an_unknown_teacher_model_is_a_recipe_error(write_recipe):
    result = CliRunner().invoke(build_app(), [
        "validate", str(write_recipe()), "--set", "teacher.name=hf", "--set", "teacher.params.model.name=tinny",
    ])
    assert result.exit_code == 1 and "teacher.params.model: unknown model 'tinny'" in result.output


@pytest.mark.model
def test_hf_teacher_on_the_untrained_tiny_model_drops_its_garbage_with_reasons(tmp_path):
    result = run_recipe(tmp_path, "loop.rounds=1", *TINY_TEACHER)
    run = result.run_dir.path
    dropped = [json.loads(line) for line in (run / "round-001" / "dropped.jsonl").read_text().splitlines()]
    synthetic = (run / "round-001" / "synthetic.jsonl").read_text().splitlines()
    assert len(dropped) + len(synthetic) == 6
    assert any(d["reason"].startswith("no final answer") for d in dropped)
    assert all(d["reason"] for d in dropped)
    journal = Journal(run / FILENAME)
    calls = result.rows[-1]["teacher_calls"]
    assert 6 < calls <= 12 and journal.count() == calls  # one question call per seed, one answer call per question


class Grader(Scripted):
    """Answers judge and referee prompts with fixed grades (the teacher's answer scores 9, the student's 3)."""

    def complete(self, prompts, params, done=None):
        self.sent.append(prompts)
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            if text.startswith("Grade a student's answer"):
                out.append(Completion("Looks wrong.\nScore: 2" if "answer: a wrong" in text else "Hmm, no grade."))
            elif text.startswith("Two answers"):
                first = text.split("Answer 1: ", 1)[1].split("\n\n", 1)[0]
                mine = first.startswith("####") or first.startswith("teacher says")
                out.append(Completion(f"Answer 1: {9 if mine else 3}\nAnswer 2: {3 if mine else 9}"))
            else:
                out.append(Completion("teacher says 4\n#### 4"))
        return out


def test_the_judge_parses_scores_and_gives_nan_where_there_is_none(tmp_path):
    teacher = Grader()
    teacher.bind(PlainTask())
    teacher.open(tmp_path)
    judged = teacher.judge(SEEDS, ["a wrong answer", "five"], random_seed=3)
    assert judged.scores[0] == 2.0 and judged.scores[1] != judged.scores[1]  # NaN: no "Score: N"
    assert judged.calls == 2
    assert all(p["temperature"] == 0.0 for p in [json.loads(r)["params"] for (r,) in
               Journal(tmp_path / FILENAME)._db.execute("SELECT request FROM calls")])


def test_the_referee_grades_both_orders_and_writes_its_own_answer_where_no_reference(tmp_path):
    teacher = Grader()
    teacher.bind(PlainTask())
    teacher.open(tmp_path)
    no_reference = Sample.create("What is 3 + 1?")
    judged = teacher.referee([SEEDS[0], no_reference], ["five", "six"], random_seed=3)
    assert judged.scores == [6.0, 6.0]  # (9 - 3) in both orders
    assert judged.calls == 2 * 2 + 1  # two orders per seed, plus the teacher's own answer to the seed without one


def test_task_templates_are_the_default_and_the_recipe_overrides_them(tmp_path):
    from loopkit.tasks.reasoning_gym import ReasoningGymTask

    task = ReasoningGymTask(ReasoningGymTask.Params(generators=["basic_arithmetic"]))
    teacher = Scripted()
    teacher.bind(task)
    seed = Sample.create("What is 2 + 2?", "#### 4", final="4")
    assert "Answer: 4" in teacher.prompts.question(seed)  # the task's template shows the seed's answer
    assert task.answer_format in teacher.prompts.render("answer", question="q")
    custom = Scripted(Scripted.Params(question_template="Another like: {question}"))
    custom.bind(task)
    assert custom.prompts.question(seed) == "Another like: What is 2 + 2?"
    rarer = seed.model_copy(update={"meta": {"prompt_variant": "rarer"}})
    assert custom.prompts.question(rarer).startswith("Another like: What is 2 + 2? Make it rarer")


def test_no_cache_sends_journaled_calls_again(tmp_path):
    scripted(tmp_path).generate(SEEDS, round_no=1, random_seed=7)
    fresh = Scripted()
    fresh.bind(PlainTask())
    fresh.open(tmp_path, use_cache=False)
    assert [g.calls for g in fresh.generate(SEEDS, round_no=1, random_seed=7)] == [2, 2]
    assert len(fresh.sent) == 2 and Journal(tmp_path / FILENAME).count() == 8


@pytest.mark.parametrize("role", ["student", "teacher.params.model"])
def test_an_unknown_model_id_offline_is_one_line_saying_how_to_get_it(write_recipe, role):
    sets = ["teacher.name=hf", "teacher.params.model.name=tiny"] if role != "student" else []
    result = CliRunner().invoke(build_app(), [
        "validate", str(write_recipe()), *[a for o in sets for a in ("--set", o)],
        "--set", f"{role}.name=hf", "--set", f"{role}.params={{path: someone/not-downloaded-model}}",
    ])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "neither a local directory nor a model in the local hub cache" in line, line
    assert "huggingface-cli download" in line and "Traceback" not in line


@pytest.mark.parametrize("model, expect", [
    ("tiny", None),
    ("3", "teacher.params.model: write a model as a name (tiny) or a mapping"),
    ("null", "teacher.params.model: write a model as a name (tiny) or a mapping ({name: hf, params: {path: ...}}), not null"),
    ("{name: tiny, params: {bogus: 1}}", "teacher.params.model: params.bogus: unknown field"),
])
def test_the_nested_model_takes_the_short_form_and_its_errors_never_name_an_internal_class(write_recipe, model, expect):
    result = CliRunner().invoke(build_app(), ["validate", str(write_recipe()), "--set", "teacher.name=hf",
                                              "--set", f"teacher.params.model={model}"], env={"COLUMNS": "300"})
    if expect is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1 and expect in result.output and "ModelSpec" not in result.output
