"""The source keeps its shape: no module imports a higher layer, and only rundir.py knows the run
directory's layout. Reads the source (no torch), in well under a second."""

import ast
import re
from pathlib import Path

import pytest

from loopkit.records import RoundRow

SRC = Path(__file__).resolve().parents[1] / "src" / "loopkit"

# Lowest first. A module may import its own layer and those below it (lazy imports included).
LAYERS = [
    ("base", {"__init__", "errors", "files", "seeding", "secrets", "progress", "device", "hookspecs", "journal",
              "checkers", "records", "component", "stopping", "stats", "console"}),
    ("plugin host", {"registry", "plugins", "builtin", "environment"}),
    ("components and the run directory", {"models", "tasks", "teachers", "selectors", "trainers", "inference", "student_engine",
                                          "reward_model", "rundir"}),
    ("what components make together", {"signals", "budget", "recipe", "evaluation"}),
    ("a run", {"prepare", "loop"}),
    ("commands", {"runner", "compare", "ray_arms", "report", "export", "evaluator", "lmeval", "scaffold", "testing", "testing_server"}),
    ("the CLI", {"cli"}),
]

# The run directory's own file names: only rundir.py joins them to a path.
RUN_FILES = {"recipe.yaml", "manifest.json", "summary.json", "COMPLETE", "selected.jsonl", "pool_signals.jsonl",
             "synthetic.jsonl", "dropped.jsonl", "fidelity.jsonl", "eval.jsonl", "metrics.json", "status.json"}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    found = [i for i, (_, names) in enumerate(LAYERS) if top in names]
    assert found, f"{module} is in no layer of tests/test_layout.py; add it where it belongs"
    return found[0]


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield "loopkit." + ".".join(path.relative_to(SRC).with_suffix("").parts), ast.parse(path.read_text(encoding="utf-8"))


def _imported(node) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loopkit"):
        return [node.module] if node.module != "loopkit" else [f"loopkit.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("loopkit.")]
    return []


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} ({LAYERS[_layer(module)][0]}) imports {name} ({LAYERS[_layer(name)][0]}), line {node.lineno}"
              for module, tree in _modules() for node in ast.walk(tree) for name in _imported(node)
              if name != "loopkit.__version__" and _layer(name) > _layer(module)]
    assert not upward, "\n".join(upward)


def test_only_the_run_directory_builds_run_paths():
    """Outside rundir.py no code names a run file or formats a round directory (messages may mention them)."""
    found = []
    for module, tree in _modules():
        if module in ("loopkit.rundir", "loopkit.testing"):  # testing.py writes a recipe file of its own, not a run's
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and (node.value in RUN_FILES or re.fullmatch(r"round-\d+", str(node.value))):
                found.append(f"{module}: {node.value!r}, line {node.lineno}")
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                    and str(node.values[0].value).endswith("round-") and len(node.values) > 1:
                found.append(f"{module}: f'round-{{...}}', line {node.lineno}")
    assert not found, "\n".join(found)


def test_a_round_row_keeps_the_format_on_disk():
    row = RoundRow(round=2, samples=12, teacher_calls=30, teacher_tokens=900, usd=0.0123, accuracy=0.5,
                   seconds={"generate": 1.5, "train": 2.0}, elapsed=7.25)
    data = row.to_json()
    assert list(data) == ["round", "samples", "teacher_calls", "teacher_tokens", "usd", "accuracy", "accuracy_se",
                          "test_items", "subtasks", "seconds", "elapsed", "kept", "dropped", "drop_reasons"]
    assert RoundRow.from_json({**data, "train": {"steps": 3}}) == row and row["accuracy"] == 0.5
    old = RoundRow.from_json({"round": 0, "samples": 0, "teacher_calls": 0, "accuracy": 0.0})  # an older run's row
    assert (old.teacher_tokens, old.usd, old.seconds, old.elapsed) == (0, 0.0, {}, 0.0)
    for broken, problem in (([], "is not a JSON object"), ({"round": 0, "samples": 0, "teacher_calls": 0}, "has no valid 'accuracy'"),
                            ({"round": 0, "samples": True, "teacher_calls": 0, "accuracy": 0.1}, "'samples' is not a number")):
        with pytest.raises(ValueError, match=problem):
            RoundRow.from_json(broken)
