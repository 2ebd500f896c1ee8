"""YAML recipes: data (``yaml.safe_load``), validated by pydantic before any model is loaded.

A recipe names one registered component per role, each with a free ``params:`` block that the
component's own ``Params`` model validates. ``include:`` pulls in a base recipe (this file wins);
``--set a.b=value`` overrides win over both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopkit.component import Component
from loopkit.secrets import refuse_literal_secrets, remember_recipe_secrets
from loopkit.errors import LoopkitError, RecipeError
from loopkit.registry import Registry

# recipe section -> component kind
ROLES = {"task": "task", "student": "model", "teacher": "teacher", "selector": "selector", "trainer": "trainer"}


class _Strict(BaseModel):
    # strict: YAML's yes/no are booleans, and `rounds: yes` must not quietly mean one round
    model_config = ConfigDict(extra="forbid", strict=True)


MAX_SAMPLES = 10_000_000  # a sample budget beyond this is a typo, not a plan


class ComponentSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        """``selector: loss`` is short for ``selector: {name: loss}``."""
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, dict):
            raise ValueError(f"write a component as a name (loss) or a mapping ({{name: loss, params: {{...}}}}), "
                             f"not {type(value).__name__}")
        return value


class LoopSpec(_Strict):
    mode: Literal["active", "static"] = Field(
        "active", description="active: select, generate and train each round; static: the same budget at once, random seeds")
    rounds: int = Field(3, ge=1, le=1000, description="loop rounds after the round-0 evaluation")
    per_round: int = Field(100, ge=1, description="m: seeds picked (and samples generated) per round")
    retrain: Literal["base", "continue"] = Field(
        "base", description="each round trains from the base student (base) or from last round's (continue)")
    max_new_tokens: int = Field(32, ge=1, le=32768, description="student answer length when predicting and evaluating")
    batch_size: int = Field(64, ge=1, description="student batch size when predicting and scoring")
    score_offspring: bool = Field(
        False, description="also score each picked seed and its synthetic offspring by the student's own loss "
                           "(fidelity.jsonl, for loopkit report's fidelity analysis); costs a pass over 2m items")
    unique_questions: bool = Field(
        True, description="drop new questions that repeat a pool seed or an earlier synthetic question "
                          "(ones that repeat a test question are always dropped)")


class BudgetSpec(_Strict):
    """Hard caps; the loop stops before a round that would exceed one (judge and referee calls count)."""

    samples: int | None = Field(None, ge=0, description="synthetic samples kept for training")
    teacher_calls: int | None = Field(None, ge=0, description="teacher calls, generation and judging")
    teacher_tokens: int | None = Field(None, ge=0, description="prompt + completion tokens of teacher calls")
    usd: float | None = Field(None, ge=0, description="teacher cost in USD (litellm's offline cost map)")


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="run directories are named <name>-<time>")
    seed: int = Field(0, ge=0, lt=2**32, description="every stage derives its own seed from this")
    task: ComponentSpec = Field(description="the seed pool, test split and answer checking")
    student: ComponentSpec = Field(description="the model being fine-tuned (a model component)")
    teacher: ComponentSpec = Field(description="writes a new question like each picked seed, and answers it")
    selector: ComponentSpec = Field(ComponentSpec(name="random"), description="picks the seeds to expand each round")
    trainer: ComponentSpec = Field(ComponentSpec(name="trl-sft"), description="fine-tunes the student on the synthetic data")
    loop: LoopSpec = Field(LoopSpec(), description="rounds, sizes and loop behaviour")
    budget: BudgetSpec = Field(BudgetSpec(), description="optional hard caps on spend")
    output_dir: str = Field("runs", description="where run directories go (loopkit run -o overrides it)")

    @property
    def sample_budget(self) -> int:
        return self.loop.rounds * self.loop.per_round

    @model_validator(mode="after")
    def _sane_budget(self) -> "Recipe":
        if self.sample_budget > MAX_SAMPLES:
            raise ValueError(f"loop.rounds x loop.per_round = {self.sample_budget:,} samples; "
                             f"at most {MAX_SAMPLES:,} (lower rounds or per_round)")
        return self


@dataclass(frozen=True)
class ResolvedRecipe:
    """A validated recipe with each component's class and validated params."""

    recipe: Recipe
    source: str  # the file it came from, for messages
    classes: dict[str, type[Component]]
    params: dict[str, BaseModel]

    def build(self, role: str) -> Any:
        return self.classes[role](self.params[role])

    def resolved_dict(self) -> dict:
        """The recipe as run: includes and overrides applied, component defaults filled in."""
        data = self.recipe.model_dump(mode="json")
        for role in ROLES:
            data[role]["params"] = self.params[role].model_dump(mode="json")
        return data


def _read_yaml(path: Path, chain: tuple[Path, ...]) -> dict:
    if path in chain:
        raise RecipeError(f"{chain[0]}: include cycle: {' -> '.join(str(p) for p in chain + (path,))}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory; pass a recipe .yaml file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; save the recipe as UTF-8") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_RecipeLoader)  # safe_load's loader, refusing duplicate keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise RecipeError(f"{path}: the recipe is empty")
    if _expanded_size(data) > MAX_VALUES:
        raise RecipeError(f"{path}: the recipe expands to more than {MAX_VALUES:,} values (YAML aliases?); "
                          "write it out without nested aliases")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections (task, student, ...), not {type(data).__name__}")
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise RecipeError(f"{path}: include: give one file name")
    base = _read_yaml((path.parent / include).resolve(), chain + (path,))
    return _merge(base, data)


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice (YAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (give each key once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MAX_VALUES = 1_000_000


def _expanded_size(data: Any) -> int:
    """How many values ``data`` holds once YAML aliases are expanded (shared nodes counted per use)."""
    memo: dict[int, int] = {}

    def size(value: Any) -> int:
        if isinstance(value, (dict, list)):
            if id(value) not in memo:
                memo[id(value)] = 0  # a cycle counts nothing more
                items = value.values() if isinstance(value, dict) else value
                memo[id(value)] = 1 + sum(size(v) for v in items)
            return memo[id(value)]
        return 1

    return size(data)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML scalars (``3``, ``true``, ``[a, b]``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: write overrides as key.path=value, e.g. --set loop.rounds=2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(source: str, prefix: str, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(filter(None, [prefix, _location(first["loc"]) if first["loc"] else ""])) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {where}: {message}{more}"


def parse_recipe(data: dict, source: str, registry: Registry) -> ResolvedRecipe:
    """Validate the recipe structure, then every component's params with its own model."""
    literal = refuse_literal_secrets(data)  # first: no later message may quote a secret
    if literal:
        raise RecipeError(f"{source}: {literal}")
    remember_recipe_secrets(data)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(source, "", exc)) from None
    classes: dict[str, type] = {}
    params: dict[str, BaseModel] = {}
    for role, kind in ROLES.items():
        spec: ComponentSpec = getattr(recipe, role)
        try:
            cls = registry.load(kind, spec.name)
        except LoopkitError as exc:
            raise RecipeError(f"{source}: {role}.name: {exc}") from None
        try:
            params[role] = cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            raise RecipeError(format_validation_error(source, f"{role}.params", exc)) from None
        classes[role] = cls
    _check_cross_fields(recipe, classes, source)
    return ResolvedRecipe(recipe, source, classes, params)


def _check_cross_fields(recipe: Recipe, classes: dict[str, type], source: str) -> None:
    from loopkit.signals import KNOWN
    from loopkit.teachers.base import can

    needs = getattr(classes["selector"], "needs", frozenset())
    unknown = sorted(needs - KNOWN)
    if unknown:
        raise RecipeError(
            f"{source}: selector.name: '{recipe.selector.name}' needs unknown signals {unknown}; "
            f"loopkit computes {sorted(KNOWN)}"
        )
    for signal, method in (("judge_score", "judge"), ("referee_gap", "referee")):
        if signal in needs and not can(classes["teacher"], method):
            raise RecipeError(
                f"{source}: selector.name: '{recipe.selector.name}' needs the teacher to {method} answers, "
                f"which teacher '{recipe.teacher.name}' cannot; choose another teacher or selector"
            )
    if "gold_loss" in needs and not getattr(classes["task"], "has_reference_answers", True):
        raise RecipeError(
            f"{source}: selector.name: '{recipe.selector.name}' needs reference answers, "
            f"which task '{recipe.task.name}' does not have; choose another selector"
        )


def load_recipe(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None) -> ResolvedRecipe:
    """Read, merge, override and validate a recipe file. Loads no model."""
    if registry is None:
        from loopkit.plugins import registry as installed_registry

        registry = installed_registry()
    path = Path(path)
    data = _read_yaml(path.resolve(), ())
    data = apply_overrides(data, overrides or [], str(path))
    return parse_recipe(data, str(path), registry)
