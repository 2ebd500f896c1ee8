"""Answer checkers on real-looking outputs, including GSM8K's strict-vs-flexible traps."""

import pytest

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
