"""The exported lm-eval task file, read by lm-evaluation-harness itself, scores as each checker does.

tests/test_checkers.py checks the checkers' lm-eval filters and metric options as Python values; this
checks them after a trip through the task's YAML and lm-eval's own loader (filters, ``exact_match``
options, the no-answer fallback with its NUL character). tests/test_export.py runs the whole thing on
a real export with a model.
"""

import json

import pytest

from loopkit import lmeval
from loopkit.tasks.jsonl import JsonlTask

CASES = {
    "numeric": (["72", "1,080", "-0.5", "0"], ["#### 72", "so 72.0 #### $1,080.", "#### -.50", "#### -0.0\nthen 7",
                                                "no number here", "72 #### 73", ""]),
    "exact": (["Paris", "New York", "(B)"], ["paris.", "#### new   york!", "  (b)  ", "Paris, France", "", "\n\nParis"]),
    "boolean": (["Yes", "false"], ["yes", "#### TRUE.", "No, because", "maybe", "", "(no)"]),
    "choice": (["B", "(c)"], ["b", "The answer is (C) 12", "Answer: B.", "Bees", "", "#### c"]),
}


@pytest.mark.parametrize("checker", sorted(CASES))
def test_the_task_file_scores_every_answer_as_the_checker_does(checker, tmp_path):
    from lm_eval.tasks import TaskManager

    references, completions = CASES[checker]
    task = JsonlTask(JsonlTask.Params(seed_file="unused.jsonl", checker=checker))
    pairs = [(r, c) for r in references for c in completions]
    rows = [{"id": f"t{i}", "question": f"q{i}", "reference": r} for i, (r, _) in enumerate(pairs)]
    spec = lmeval.write_task(tmp_path / "lm-eval", "loopkit_test", task, rows, 8, "a test")
    assert spec.readings == task.checker.readings and spec.gaps == ((task.checker.lm_eval_gap,) if task.checker.lm_eval_gap else ())

    manager = TaskManager(include_path=str(tmp_path / "lm-eval"), include_defaults=False)
    evaluation = manager.load("loopkit_test")["tasks"]["loopkit_test"]
    evaluation.build_all_requests()
    for instance in evaluation.instances:
        instance.resps = [pairs[instance.doc_id][1]]
        assert instance.arguments[0] == f"Question: q{instance.doc_id}\nAnswer:"  # the task's prompt, verbatim
    evaluation.apply_filters()
    for instance in evaluation.instances:
        reference, completion = pairs[instance.doc_id]
        scores = {reading: evaluation.process_results(instance.doc, [instance.filtered_resps[reading]])["exact_match"]
                  for reading in spec.readings}
        expected = task.checker.score(reference, completion)
        assert scores == {k: float(v) for k, v in expected.items()}, (reference, completion)
    assert json.loads((tmp_path / "lm-eval" / "test.jsonl").read_text().splitlines()[0])["prompt"] == "Question: q0\nAnswer:"


def test_task_names_are_what_lm_eval_accepts():
    assert lmeval.task_name("GSM8K-20261125-101500") == "loopkit_gsm8k_20261125_101500"


def test_reasoning_gym_says_which_generators_lm_eval_checks_differently():
    from loopkit.tasks.reasoning_gym import ReasoningGymTask

    def gap(*names):
        return ReasoningGymTask(ReasoningGymTask.Params(generators=list(names))).lm_eval_checker()[1]

    assert gap("syllogism", "aiw") is None  # the default verifier: full marks for the reference itself only
    assert "family_relationships" in gap("syllogism", "family_relationships") and "syllogism" not in gap(
        "syllogism", "family_relationships")
