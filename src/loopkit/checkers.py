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

Each checker also says how lm-evaluation-harness reads and compares answers the same way with its
own filters (``regex``, ``lowercase``, ``uppercase``, ``map``) and ``exact_match`` metric, so an
exported lm-eval task (``loopkit export``) needs no code of ours; ``lm_eval_gap`` says where it
cannot (``math``).

``Checker.final`` reads the final answer of a worked answer (a seed's reference, a teacher's
answer) the one way both are read: what follows the last ``####``, which must be an answer the
checker can read on its own (``"12 + 16 = 20"`` is no ``numeric`` answer).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

FINAL_MARKER = "####"

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+")

# -- lm-evaluation-harness forms of the readings (see Checker.lm_eval) ----------------------------
_NOT_A_LINE_BREAK = r"[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"  # str.splitlines splits at each of these
# final_part as one regex: after the last ####, the first non-blank text up to a line break; with no ####,
# the first non-blank line. lm-eval's regex filter strips the match, as final_part does.
FINAL_PART_REGEX = (rf"(?s)\A(?:.*{FINAL_MARKER}\s*({_NOT_A_LINE_BREAK}*)"
                    rf"|(?!.*{FINAL_MARKER})\s*({_NOT_A_LINE_BREAK}*))")
NO_ANSWER = "\x00no answer"  # what lm-eval reads from a completion with no answer: equal to no reference
_EDGE = r"""[\s.,;:!?"'`()\[\]{}]"""  # what normalise strips from both ends of an answer


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


def regex_filter(pattern: str, group_select: int = 0) -> dict:
    """lm-eval's ``regex`` filter: the first non-empty group of match ``group_select`` (-1: the last), stripped."""
    return {"function": "regex", "regex_pattern": pattern, "group_select": group_select, "fallback": NO_ANSWER}


class Checker:
    """The reference's text, verbatim, after ``####`` (else the first line): the base every checker refines."""

    name = "checker"
    readings: tuple[str, ...] = ("match",)
    lm_eval_gap: str | None = None  # where lm-eval's scoring (below) can differ from ``score``; None: nowhere

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

    fallback: str | None = None  # the reading that finds an answer with no '####' line (numeric: flexible)

    def final(self, answer: str, plain: bool = False) -> tuple[str | None, str]:
        """The final answer of a worked answer and the reading that found it, or (None, why there is none).

        Readings: "marked" (after the last '####'); with ``plain`` (a seed's reference), "plain" (a
        one-line answer is the final answer alone: "24"); else the checker's ``fallback`` (numeric:
        "flexible", the last number). The final must be an answer this checker can read whole.
        """
        if FINAL_MARKER in answer:
            final, reading = final_part(answer), "marked"
        elif plain and len(answer.strip().splitlines()) == 1:
            final, reading = answer.strip(), "plain"
        elif self.fallback is not None and not plain:
            final, reading = self.read(answer)[self.fallback], self.fallback
            if final is None:
                return None, f"no '{FINAL_MARKER} <answer>' line, nor an answer its {self.fallback} reading finds"
        else:
            return None, f"no '{FINAL_MARKER} <answer>' line"
        if not final:
            return None, f"nothing after '{FINAL_MARKER}'"
        if not self.matches_itself(final):
            return None, f"the {self.name} checker cannot read {final[:60]!r} as an answer"
        return final, reading

    def lm_eval(self) -> dict[str, list[dict]]:
        """Per reading, the lm-eval filters that read a completion's answer as ``read`` does."""
        return {"match": [regex_filter(FINAL_PART_REGEX)]}

    def lm_eval_metric(self) -> dict:
        """The options of lm-eval's ``exact_match`` under which a read answer equals ``lm_eval_target(reference)``
        exactly when ``same(reference, answer)``."""
        return {}

    def lm_eval_target(self, reference: str) -> str:
        """The reference as an exported lm-eval task stores it."""
        return reference


class NumericChecker(Checker):
    name = "numeric"
    readings = ("strict", "flexible")
    fallback = "flexible"

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

    def lm_eval(self) -> dict[str, list[dict]]:
        number = f"({_NUMBER.pattern})"
        return {"strict": [regex_filter(rf"(?s){FINAL_MARKER}(?!.*{FINAL_MARKER}).*?{number}")],
                "flexible": [regex_filter(number, group_select=-1)]}

    def lm_eval_metric(self) -> dict:
        # Equal values, equal text: drop what parse_number ignores, then leading zeros, trailing fractional
        # zeros and the sign of zero (every zero becomes ""). Applied in order, to answers and targets alike.
        after_point = "|".join(rf"(?<=\.\d{{{n}}})" for n in range(21))
        return {"regexes_to_ignore": [",", r"\$", " ", r"^\s+", rf"(?:{after_point})0+$", r"\.$", r"(?:^|(?<=^-))0+", r"^-$"]}

    def lm_eval_target(self, reference: str) -> str:
        number = parse_number(reference)
        return reference if number is None else f"{number:f}"


def normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?\"'`()[]{}")


class ExactChecker(Checker):
    name = "exact"
    lm_eval_gap = "lm-eval keeps a tab inside an answer, where loopkit reads a space"

    def same(self, reference: str, answer: str) -> bool:
        return normalise(reference) == normalise(answer)

    def lm_eval_metric(self) -> dict:
        return {"ignore_case": True, "regexes_to_ignore": [rf"^{_EDGE}+", rf"{_EDGE}+$", r"\s+(?=\s)"]}

    def lm_eval_target(self, reference: str) -> str:
        return normalise(reference)


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

    def lm_eval(self) -> dict[str, list[dict]]:
        canonical = {word: "yes" if value else "no" for word, value in _BOOLEAN.items()}
        return {"match": [regex_filter(FINAL_PART_REGEX), {"function": "lowercase"}, regex_filter(rf"\A{_EDGE}*([a-z]+)"),
                          {"function": "map", "mapping_dict": canonical, "default_value": NO_ANSWER}]}

    def lm_eval_target(self, reference: str) -> str:
        return "yes" if _BOOLEAN.get(normalise(reference)) else "no"


class ChoiceChecker(Checker):
    name = "choice"

    def read(self, completion: str) -> dict[str, str | None]:
        part = final_part(completion) or ""
        part = re.sub(r"^(the )?(final )?answer( is)?\s*[:=]?\s*", "", part.strip(), flags=re.IGNORECASE)
        letter = re.match(r"\(?([A-Ea-e])(?:\)|\.|:|\s|$)", part)
        return {"match": letter.group(1).upper() if letter else None}

    def same(self, reference: str, answer: str) -> bool:
        return normalise(reference).upper() == answer

    def lm_eval(self) -> dict[str, list[dict]]:
        letter = r"(?i)\A(?:(?:the )?(?:final )?answer(?: is)?\s*[:=]?\s*)?\(?([A-E])(?:\)|\.|:|\s|$)"
        return {"match": [regex_filter(FINAL_PART_REGEX), regex_filter(letter), {"function": "uppercase"}]}

    def lm_eval_target(self, reference: str) -> str:
        return normalise(reference).upper()


class MathChecker(Checker):
    """Math-Verify (``pip install 'loopkit[math]'``): symbolic equivalence of LaTeX or plain answers.

    Math-Verify's own timeouts use SIGALRM, which fails off the main thread; they are turned off
    and each check instead runs in a daemon thread that is abandoned after ``timeout`` seconds
    (counted as wrong).
    """

    name = "math"
    timeout = 5.0
    lm_eval_gap = ("lm-eval has no symbolic equivalence (Math-Verify): it compares the final answer (after ####, "
                   "else the first line) with the reference as text, so it counts fewer answers correct than loopkit")

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
