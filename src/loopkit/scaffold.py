"""``loopkit plugin new``: an installable ``loopkit-<kind>-<name>`` package that works as generated.

The package has a pyproject with the ``loopkit`` entry point, one component class with its
``Params``, a README, and a test that runs a one-round loop with the component through the
``loopkit_run`` fixture (``loopkit.testing``, a pytest plugin). Edit the class; keep the test green.
"""

from __future__ import annotations

import re
from pathlib import Path

from loopkit.errors import LoopkitError

KINDS = ("selector", "task", "model", "teacher", "trainer")

# Per kind: the hook, the class body (with {cls}), and the override that puts it in the test recipe.
_COMPONENTS = {
    "selector": ("register_selectors", '''from loopkit.selectors.base import ScoreSelector


class {cls}(ScoreSelector):
    """Picks the seeds with the highest own loss, raised to ``power`` (edit ``score``)."""

    needs = frozenset({{"own_loss"}})
    signal = "own_loss"

    class Params(Params):
        power: float = Field(1.0, gt=0, description="an example parameter, validated from the recipe")

    def score(self, signals):
        return np.asarray(signals["own_loss"], dtype=np.float64) ** self.params.power
''', "selector.name={name}"),
    "task": ("register_tasks", '''from loopkit.records import Sample
from loopkit.tasks.base import Task, TaskData


class {cls}(Task):
    """Two-number sums (edit ``load`` to read your data; ``check`` decides what is correct)."""

    class Params(Params):
        pool_size: int = Field(16, ge=1)
        test_size: int = Field(8, ge=1)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        pairs = rng.integers(0, 50, size=(self.params.pool_size + self.params.test_size, 2))
        samples = [Sample.create(f"What is {{a}} + {{b}}?", str(a + b), final=str(a + b)) for a, b in pairs.tolist()]
        return TaskData(pool=samples[: self.params.pool_size], test=samples[self.params.pool_size :])

    def check(self, sample, completion):
        return self.extract(completion) == sample.final
''', "task={{name: {name}}}|teacher={{name: hf, params: {{model: {{name: tiny, params: {{hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}}}}, max_new_tokens: 8}}}}"),
    "model": ("register_models", '''from loopkit.models.tiny import TinyModel


class {cls}(TinyModel):
    """The tiny character-level Llama with other defaults (edit ``load`` to build or load your model)."""

    class Params(TinyModel.Params):
        hidden_size: int = Field(32, ge=8)
        layers: int = Field(1, ge=1)
        heads: int = Field(2, ge=1)
        intermediate_size: int = Field(64, ge=8)
''', "student.name={name}"),
    "teacher": ("register_teachers", '''from loopkit.records import Sample
from loopkit.teachers.base import Generation, Teacher


class {cls}(Teacher):
    """Restates each seed as a new question with the seed's reference answer (edit ``generate``)."""

    class Params(Params):
        prefix: str = Field("Once more:", description="put before each seed question")

    def generate(self, seeds, round, seed):
        out = []
        for s in seeds:
            if s.answer is None:
                out.append(Generation(s, None, "the seed has no reference answer", calls=1))
                continue
            new = Sample.create(f"{{self.params.prefix}} {{s.question}}", s.answer, final=s.final,
                                source="{name}", seed_id=s.id, round=round)
            out.append(Generation(s, new, calls=1))
        return out
''', "teacher.name={name}"),
    "trainer": ("register_trainers", '''from loopkit.trainers.trl_sft import TRLSFTTrainer


class {cls}(TRLSFTTrainer):
    """TRL SFT with other defaults (override ``train`` for your own training loop)."""

    class Params(TRLSFTTrainer.Params):
        epochs: float = Field(1.0, gt=0)
        learning_rate: float = Field(3e-3, gt=0)
''', "trainer.name={name}"),
}

_MODULE = '''"""loopkit {kind} '{name}': {summary}"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from loopkit.component import Params
from loopkit.hookspecs import hookimpl
{body}

@hookimpl
def {hook}(register):
    register("{name}", {cls})
'''

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "loopkit {kind}: {name}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["loopkit>=0.1", "numpy>=1.24"]

[project.optional-dependencies]
test = ["pytest>=8"]

# loopkit finds the component through this entry point (group "loopkit").
[project.entry-points.loopkit]
{name} = "{package}"

[tool.setuptools.packages.find]
where = ["src"]
'''

_README = '''# {dist}

A loopkit {kind}, `{name}`. Install it and use it by name in a recipe:

```
pip install -e .
loopkit list-plugins            # shows {kind} {name} from {dist}
loopkit run recipe.yaml --set {override}
```

Test it (a one-round loop on loopkit's tiny offline model, through the `loopkit_run` fixture):

```
pip install -e ".[test]" && pytest
```

A new selector should come with evidence: `loopkit compare recipe.yaml --selectors {name},random --seeds 3`.
'''

_TEST = '''"""The {kind} runs by name in a one-round loop (loopkit's tiny offline model; seconds on a CPU)."""

from {package} import {cls}


def test_params_have_defaults():
    assert {cls}.Params()


def test_runs_in_a_loop(loopkit_run):
    result = loopkit_run({overrides})
    assert [row["round"] for row in result.rows] == [0, 1]
    assert 0.0 <= result.rows[-1]["accuracy"] <= 1.0
'''


def new_plugin(kind: str, name: str, parent: Path) -> Path:
    """Write ``parent/loopkit-<kind>-<name>/`` and return it."""
    if kind not in KINDS:
        raise LoopkitError(f"--kind {kind}: not a component kind; choose one of {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise LoopkitError(f"--name {name}: use lowercase letters, digits and single dashes, starting with a letter (e.g. my-selector)")
    dist = f"loopkit-{kind}-{name}"
    package = dist.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()
    root = parent / dist
    if root.exists():
        raise LoopkitError(f"{root} already exists; choose another --name or --dir")
    hook, body, override = _COMPONENTS[kind]
    overrides = override.format(name=name).split("|")  # a task needs an LLM teacher: its own tiny one here
    values = {"kind": kind, "name": name, "dist": dist, "package": package, "cls": cls, "hook": hook,
              "override": " --set ".join(f"'{o}'" for o in overrides), "overrides": ", ".join(repr(o) for o in overrides)}
    body = body.format(**values)
    files = {
        "pyproject.toml": _PYPROJECT.format(**values),
        "README.md": _README.format(**values),
        f"src/{package}/__init__.py": _MODULE.format(summary=body.split('"""')[1], body="\n" + body, **values),
        f"tests/test_{package}.py": _TEST.format(**values),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
