"""loopkit: closed-loop ("active") synthetic data generation for fine-tuning small language models.

Everything a plugin needs is importable from here (``from loopkit import hookimpl, Params, Selector``);
the modules behind these names may move, these names stay. They are imported on first use (PEP 562),
so ``import loopkit`` and ``loopkit --help`` stay light.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loopkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# The public API: name -> the module it lives in. One line per name, so a move is a one-line change.
_PUBLIC = {
    # plugins: the hook marker; a component's params (pydantic's Field for their fields)
    "hookimpl": "loopkit.hookspecs",
    "Register": "loopkit.hookspecs",
    "Component": "loopkit.component",
    "Params": "loopkit.component",
    "Field": "pydantic",
    # the record that flows through the loop
    "Sample": "loopkit.records",
    # tasks
    "Task": "loopkit.tasks.base",
    "TaskData": "loopkit.tasks.base",
    "format_answer": "loopkit.tasks.base",
    # models (the student, and local teacher models)
    "ModelSource": "loopkit.models.base",
    "ModelSpec": "loopkit.models.spec",
    # teachers
    "Teacher": "loopkit.teachers.base",
    "Generation": "loopkit.teachers.base",
    "Judgement": "loopkit.teachers.base",
    "LLMTeacher": "loopkit.teachers.llm",
    "Completion": "loopkit.teachers.calls",
    # selectors
    "Selector": "loopkit.selectors.base",
    "ScoreSelector": "loopkit.selectors.base",
    "Selection": "loopkit.selectors.base",
    "Signals": "loopkit.selectors.base",
    "top_m": "loopkit.selectors.base",
    "finite": "loopkit.selectors.base",
    "finite_rows": "loopkit.selectors.base",
    "pick_finite_rows": "loopkit.selectors.base",
    # trainers, and the progress a long stage reports
    "Trainer": "loopkit.trainers.base",
    "Stage": "loopkit.progress",
    "Progress": "loopkit.progress",
    # errors a plugin raises for a user's mistake (one line that says how to fix it)
    "LoopkitError": "loopkit.errors",
    "RecipeError": "loopkit.errors",
    "DataError": "loopkit.errors",
    "UnavailableError": "loopkit.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'loopkit' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
