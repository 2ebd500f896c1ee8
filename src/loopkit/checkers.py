"""Answer checkers: how a task decides that a completion's final answer matches the reference.

Each checker reads a completion in one or more ways (``readings``); the first reading is the one
the loop's accuracy uses, and every reading is reported beside it (as lm-evaluation-harness
reports GSM8K's strict and flexible matches side by side).

- ``numeric``: GSM8K conventions. *strict* reads the number after the last ``####``; *flexible*
  reads the last number anywhere in the text. Commas, ``$`` and a trailing ``.`` are ignored, and
  numbers compare by value (``42.0`` == ``42``).
- ``exact``: the final answer (after ``####``, else the first non-empty line), normalised:
  case, surrounding punctuation and runs of blank space do not matter.
- ``boolean``: yes/no and true/false (either spelling matches either).
- ``choice``: a multiple-choice letter A-E ("B", "(b)", "Answer: B) 12").
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

FINAL_MARKER = "####"

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+")


def final_part(completion: str) -> str | None:
    """What follows the last ``####`` (its first line), else the first non-empty line."""
    if FINAL_MARKER in completion:
        tail = completion.rsplit(FINAL_MARKER, 1)[1].strip()
        return tail.splitlines()[0].strip() if tail else None
    for line in completion.splitlines():
        if line.strip():
            return line.strip()
    return None


def parse_number(text: str | None) -> Decimal | None:
    """A number as GSM8K writes it: ``1,234``, ``$5``, ``-3.50``, ``7.`` -> Decimal; else None."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None  # "NaN", "sNaN" (which raises when compared), "Infinity"


def _numbers(text: str) -> list[str]:
    return [m.group(0).strip() for m in _NUMBER.finditer(text)]


class Checker:
    name = "checker"
    readings: tuple[str, ...] = ("match",)

    def read(self, completion: str) -> dict[str, str | None]:
        """The final answer under each reading (None: nothing could be read)."""
        return {"match": final_part(completion)}

    def same(self, reference: str, answer: str) -> bool:
        return reference == answer

    def score(self, reference: str, completion: str) -> dict[str, bool]:
        """Per reading: whether the completion's answer matches ``reference``."""
        return {name: answer is not None and self.same(reference, answer) for name, answer in self.read(completion).items()}

    def matches_itself(self, reference: str) -> bool:
        """Whether a completion that is ``reference`` itself counts as correct; if not, no answer ever can
        (e.g. ``1/2`` or ``NaN`` under ``numeric``, ``maybe`` under ``boolean``)."""
        return any(self.score(reference, reference).values())


class NumericChecker(Checker):
    name = "numeric"
    readings = ("strict", "flexible")

    def read(self, completion: str) -> dict[str, str | None]:
        strict = None
        if FINAL_MARKER in completion:
            found = _numbers(completion.rsplit(FINAL_MARKER, 1)[1])
            strict = found[0] if found else None
        found = _numbers(completion)
        return {"strict": strict, "flexible": found[-1] if found else None}

    def same(self, reference: str, answer: str) -> bool:
        a, b = parse_number(reference), parse_number(answer)
        return a is not None and b is not None and a == b


def normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?\"'`()[]{}")


class ExactChecker(Checker):
    name = "exact"

    def same(self, reference: str, answer: str) -> bool:
        return normalise(reference) == normalise(answer)


_BOOLEAN = {"yes": True, "true": True, "no": False, "false": False}


class BooleanChecker(Checker):
    name = "boolean"

    def read(self, completion: str) -> dict[str, str | None]:
        part = final_part(completion)
        word = re.match(r"[a-z]+", normalise(part)) if part else None
        return {"match": word.group(0) if word and word.group(0) in _BOOLEAN else None}

    def same(self, reference: str, answer: str) -> bool:
        ref = _BOOLEAN.get(normalise(reference))
        return ref is not None and ref == _BOOLEAN.get(answer)


class ChoiceChecker(Checker):
    name = "choice"

    def read(self, completion: str) -> dict[str, str | None]:
        part = final_part(completion) or ""
        part = re.sub(r"^(the )?(final )?answer( is)?\s*[:=]?\s*", "", part.strip(), flags=re.IGNORECASE)
        letter = re.match(r"\(?([A-Ea-e])(?:\)|\.|:|\s|$)", part)
        return {"match": letter.group(1).upper() if letter else None}

    def same(self, reference: str, answer: str) -> bool:
        return normalise(reference).upper() == answer


class MathChecker(Checker):
    """Math-Verify (``pip install 'loopkit[math]'``): symbolic equivalence of LaTeX or plain answers.

    Math-Verify's own timeouts use SIGALRM, which fails off the main thread; they are turned off
    and each check instead runs in a daemon thread that is abandoned after ``timeout`` seconds
    (counted as wrong).
    """

    name = "math"
    timeout = 5.0

    def matches_itself(self, reference: str) -> bool:
        return True  # a symbolic check per reference would make loading a data set slow

    def read(self, completion: str) -> dict[str, str | None]:
        return {"match": completion if completion.strip() else None}

    def same(self, reference: str, answer: str) -> bool:
        import threading

        try:
            from math_verify import parse, verify
        except ImportError:
            from loopkit.errors import LoopkitError

            raise LoopkitError("the math checker needs Math-Verify: pip install 'loopkit[math]'") from None
        result = [False]

        def work() -> None:
            gold = parse(reference if "$" in reference else f"${reference}$", parsing_timeout=None)
            result[0] = bool(verify(gold, parse(answer, parsing_timeout=None), timeout_seconds=None))

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(self.timeout)
        return result[0] if not worker.is_alive() else False


CHECKERS: dict[str, type[Checker]] = {
    c.name: c for c in (NumericChecker, ExactChecker, BooleanChecker, ChoiceChecker, MathChecker)
}
