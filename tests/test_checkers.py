"""Answer checkers on real-looking outputs, including GSM8K's strict-vs-flexible traps."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopkit.checkers import BooleanChecker, ChoiceChecker, ExactChecker, NumericChecker

numeric = NumericChecker()


@pytest.mark.parametrize("completion, strict, flexible", [
    ("Natalia sold 48 / 2 = 24 clips in May.\nShe sold 48 + 24 = 72 clips.\n#### 72", True, True),
    ("She earns $1,080 per week.\n#### $1,080.", True, True),                       # $, comma, trailing dot
    ("#### 72.0", True, True),                                                      # compared by value
    ("So the answer is 72.", False, True),                                          # no '####': strict misses
    ("#### 72\nThat took 3 steps.", True, False),                                   # flexible reads the last number
    ("48 + 24 = 72, so #### 70", False, False),
    ("I cannot tell.", False, False),
    ("#### seventy-two", False, False),
])
def test_numeric_strict_and_flexible_readings(completion, strict, flexible):
    assert numeric.score("72" if "1,080" not in completion else "1080", completion) == {"strict": strict, "flexible": flexible}


def test_numeric_negative_and_decimal():
    assert numeric.score("-3.5", "It drops by -3.50 degrees.\n#### -3.50") == {"strict": True, "flexible": True}
    assert numeric.score("0.25", "#### .25") == {"strict": True, "flexible": True}


@pytest.mark.parametrize("checker, reference, completion, expected", [
    (ExactChecker(), "Paris", "The capital.\n#### paris.", True),
    (ExactChecker(), "New  York", "new york", True),
    (ExactChecker(), "Paris", "#### Lyon", False),
    (BooleanChecker(), "Yes", "#### yes", True),
    (BooleanChecker(), "True", "Yes, it follows.", True),
    (BooleanChecker(), "No", "Yes.", False),
    (BooleanChecker(), "No", "Maybe", False),
    (ChoiceChecker(), "B", "The answer is (b)", True),
    (ChoiceChecker(), "B", "#### B) 12 apples", True),
    (ChoiceChecker(), "C", "Answer: C", True),
    (ChoiceChecker(), "C", "Bananas are yellow", False),  # a word that starts with a letter is not a choice
    (ChoiceChecker(), "A", "#### F", False),
])
def test_exact_boolean_and_choice(checker, reference, completion, expected):
    assert checker.score(reference, completion)["match"] is expected


def test_math_verify_checker_runs_off_the_main_thread():
    pytest.importorskip("math_verify")
    import threading

    from loopkit.checkers import MathChecker

    checker = MathChecker()
    results = {}

    def work():  # Math-Verify's own SIGALRM timeout would fail here, off the main thread
        results["half"] = checker.score("\\frac{1}{2}", "So the answer is $0.5$.")["match"]
        results["boxed"] = checker.score("2", "Thus \\boxed{\\sqrt{4}}")["match"]
        results["wrong"] = checker.score("3", "The answer is $\\pi$.")["match"]

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert results == {"half": True, "boxed": True, "wrong": False}


@pytest.mark.parametrize("text", ["NaN", "sNaN", "Infinity", "-inf"])
def test_non_finite_numbers_are_no_numbers(text):
    """Decimal("sNaN") raises when compared: a reference like it must never reach a comparison."""
    from loopkit.checkers import NumericChecker, parse_number

    assert parse_number(text) is None
    assert NumericChecker().score(text, "#### 5") == {"strict": False, "flexible": False}
    assert not NumericChecker().matches_itself(text)


@pytest.mark.parametrize("checker, reference, ok", [
    ("numeric", "1,234", True), ("numeric", "1/2", False), ("boolean", "Yes", True), ("boolean", "maybe", False),
    ("choice", "b", True), ("choice", "F", False), ("exact", "Paris", True), ("exact", "two\nlines", False),
])
def test_a_reference_must_match_itself(checker, reference, ok):
    from loopkit.checkers import CHECKERS

    assert CHECKERS[checker]().matches_itself(reference) is ok


# -- lm-evaluation-harness reads and compares answers as the checkers do ------------------------------
# Completions are drawn from pieces that hit every rule: the marker, line breaks of every kind, signs,
# $ and commas, redundant zeros, case, edge punctuation, letter and yes/no forms.
PIECES = ["####", "#### ", "#", " ", "  ", "\n", "\t", "\r\n", "\u2028", "\x0c", ".", ",", ":", "-", "$", "$ ", "(", ")",
          "'", "0", "00", "1", "5", "42", "0.50", ".5", "1,000", "-0", "7.", "a", "b", "B", "e", "Yes", "no", "TRUE",
          "false", "yesno", "Answer: ", "The answer is ", "final answer: ", "(c)", "hello world", "HELLO  World"]
REFERENCES = {
    "checker": ["Yes", "42", "hello world", "(c)"],
    "exact": ["Yes", "hello world", "42", "(c)", "e"],
    "boolean": ["yes", "No", "TRUE", "false"],
    "choice": ["B", "(c)", "a", "E."],
    "numeric": ["42", "-0.5", "1,000", "0", "5.0", "$7", "1e3", ".5", "7"],
}


def lm_eval_scores(checker, reference: str, completion: str) -> dict[str, bool]:
    """``checker.score`` as lm-eval computes it: the task's filters on the completion, then exact_match."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters import build_filter_ensemble

    scores = {}
    for reading, pipeline in checker.lm_eval().items():
        steps = [[f["function"], {k: v for k, v in f.items() if k != "function"}] for f in pipeline]
        instance = Instance(request_type="generate_until", doc={}, arguments=("", {}), idx=0)
        instance.resps = [completion]
        build_filter_ensemble(reading, [*steps, ["take_first", None]]).apply([instance])
        answer = instance.filtered_resps[reading]
        match = exact_match_hf_evaluate([answer], [checker.lm_eval_target(reference)], **checker.lm_eval_metric())
        scores[reading] = bool(match["exact_match"])
    return scores


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(REFERENCES)), parts=st.lists(st.sampled_from(PIECES), max_size=10), data=st.data())
def test_lm_eval_scores_every_completion_as_the_checker_does(name, parts, data):
    from loopkit.checkers import CHECKERS, Checker

    checker = Checker() if name == "checker" else CHECKERS[name]()
    reference = data.draw(st.sampled_from(REFERENCES[name]))
    parts.insert(data.draw(st.integers(0, len(parts))), data.draw(st.sampled_from([reference, f"#### {reference}", reference.lower()])))
    completion = "".join(parts)
    assert lm_eval_scores(checker, reference, completion) == checker.score(reference, completion), repr(completion)


@pytest.mark.parametrize("name, reference, completion, expected", [
    ("numeric", "1,000", "so #### $1,000.00 dollars", {"strict": True, "flexible": True}),
    ("numeric", "-0.5", "-.50 then 3", {"strict": False, "flexible": False}),
    ("numeric", "0", "#### -0.0", {"strict": True, "flexible": True}),
    ("exact", "hello world", "  (Hello   World).", {"match": True}),
    ("boolean", "true", "#### YES, because", {"match": True}),
    ("choice", "(c)", "The answer is (C) 12", {"match": True}),
    ("checker", "Yes", "\u2028 Yes \u2028No", {"match": True}),
    ("checker", "Yes", "#### \n", {"match": False}),
])
def test_lm_eval_scores_known_cases(name, reference, completion, expected):
    from loopkit.checkers import CHECKERS, Checker

    checker = Checker() if name == "checker" else CHECKERS[name]()
    assert checker.score(reference, completion) == expected
    assert lm_eval_scores(checker, reference, completion) == expected


def test_the_math_checker_says_where_lm_eval_differs():
    from loopkit.checkers import MathChecker

    assert "symbolic" in MathChecker.lm_eval_gap and NumericChecker.lm_eval_gap is None
