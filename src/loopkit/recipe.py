"""YAML recipes: data (``yaml.safe_load``), validated by pydantic before any model is loaded.

A recipe names one registered component per role, each with a free ``params:`` block that the
component's own ``Params`` model validates. ``include:`` pulls in a base recipe (this file wins);
``--set a.b=value`` overrides win over both.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopkit.component import RECIPE_FOLDER, Component, format_validation_error, named_alone
from loopkit.secrets import refuse_literal_secrets, remember_recipe_secrets
from loopkit.errors import LoopkitError, RecipeError
from loopkit.files import MiB, name_problem, read_text, shown
from loopkit.registry import Registry

# recipe section -> component kind
ROLES = {"task": "task", "student": "model", "teacher": "teacher", "selector": "selector", "trainer": "trainer"}


class _Strict(BaseModel):
    # strict: YAML's yes/no are booleans, and `rounds: yes` must not quietly mean one round;
    # no inf/nan: `.inf` validates against any bound and crashes deep in a run
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


MAX_SAMPLES = 10_000_000  # a sample budget beyond this is a typo, not a plan


class ComponentSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        """``selector: loss`` is short for ``selector: {name: loss}``."""
        return named_alone(value, "a component", "loss", "{name: loss, params: {...}}")


class VLLMStudentSpec(_Strict):
    """The student's vLLM engine (``loop.engine: vllm``)."""

    kv_cache_gib: float | None = Field(
        None, gt=0, description="memory for the KV cache; default: gpu_memory_utilization of a GPU, or 2 GiB on a CPU")
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="share of the GPU the engine takes while awake (training needs the rest)")
    sleep: bool = Field(True, description="on a GPU, put the engine to sleep (vLLM sleep mode) while the student trains")
    max_model_len: int | None = Field(None, ge=16, description="longest prompt + answer, in tokens; default: the model's")
    engine: dict[str, Any] = Field(default_factory=dict, description="more vllm.LLM arguments, e.g. {tensor_parallel_size: 2}")


class LoopSpec(_Strict):
    mode: Literal["active", "static", "static-matched"] = Field(
        "active", description="active: select, generate and train each round; static: the whole budget at once from "
                              "uniformly random seeds, trained once; static-matched: static's data, trained through the "
                              "active rounds (round t trains on the first t/rounds of it)")
    rounds: int = Field(3, ge=1, le=1000, description="loop rounds after the round-0 evaluation")
    per_round: int = Field(100, ge=1, description="m: seeds picked (and samples generated) per round")
    retrain: Literal["base", "continue"] = Field(
        "base", description="each round trains from the base student (base) or from last round's (continue)")
    max_new_tokens: int = Field(32, ge=1, le=32768, description="student answer length when predicting and evaluating")
    batch_size: int = Field(64, ge=1, description="student batch size when predicting and scoring")
    engine: Literal["hf", "vllm"] = Field(
        "hf", description="what generates the student's answers (predict, evaluate): hf (transformers' generate, the "
                          "reference) or vllm (a resident vLLM engine that follows the trained student; see loop.vllm)")
    vllm: VLLMStudentSpec = Field(VLLMStudentSpec(), description="the student's vLLM engine, with loop.engine: vllm")
    score_offspring: bool = Field(
        False, description="also score each picked seed and the question the teacher wrote from it (kept or "
                           "dropped) by the student's own loss (fidelity.jsonl, for loopkit report's fidelity "
                           "analysis); costs a pass over 2m items")
    stop_after_empty_rounds: int = Field(
        2, ge=0, description="stop the run (keeping its complete rounds) when this many rounds in a row kept none of "
                             "their samples (every one dropped); 0: never stop for that")
    unique_questions: bool = Field(
        True, description="drop new questions that repeat a pool seed or an earlier synthetic question "
                          "(ones that repeat a test question are always dropped)")

    @property
    def sample_budget(self) -> int:
        """The samples a run generates in all (static modes: in their first round)."""
        return self.rounds * self.per_round


class BudgetSpec(_Strict):
    """Hard caps; the loop stops before a round that would exceed one (judge and referee calls count)."""

    samples: int | None = Field(None, ge=0, description="synthetic samples kept for training")
    teacher_calls: int | None = Field(None, ge=0, description="teacher calls, generation and judging")
    teacher_tokens: int | None = Field(None, ge=0, description="prompt + completion tokens of teacher calls")
    usd: float | None = Field(None, ge=0, description="teacher cost in USD (litellm's offline cost map)")


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="run directories are named <name>-<time>")
    seed: int = Field(0, ge=0, lt=2**32, description="every stage derives its own seed from this")
    task: ComponentSpec = Field(description="the seed pool, test split and answer checking")
    student: ComponentSpec = Field(description="the model being fine-tuned (a model component)")
    teacher: ComponentSpec = Field(description="writes a new question like each picked seed, and answers it")
    selector: ComponentSpec = Field(ComponentSpec(name="random"), description="picks the seeds to expand each round")
    trainer: ComponentSpec = Field(ComponentSpec(name="trl-sft"), description="fine-tunes the student on the synthetic data")
    loop: LoopSpec = Field(LoopSpec(), description="rounds, sizes and loop behaviour")
    budget: BudgetSpec = Field(BudgetSpec(), description="optional hard caps on spend")
    output_dir: str = Field("runs", description="where run directories go (loopkit run -o overrides it)")

    @model_validator(mode="after")
    def _sane_budget(self) -> "Recipe":
        if self.loop.sample_budget > MAX_SAMPLES:
            raise ValueError(f"loop.rounds x loop.per_round = {self.loop.sample_budget:,} samples; "
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


MAX_RECIPE_BYTES = 1 * MiB  # a recipe is a page of settings; more is a wrong file (or /dev/zero)
MAX_VALUES = 1_000_000  # values once aliases are expanded (the "billion laughs" bomb)
MAX_DEPTH = 50  # nesting of mappings and lists; recipes use fewer than 10


def _read_yaml(path: Path, chain: tuple[Path, ...]) -> dict:
    real = _resolve(path)  # includes are found from the real file's directory; cycles by real path
    if real in chain:
        raise RecipeError(f"{shown(chain[0])}: include cycle: {' -> '.join(shown(p) for p in chain + (real,))}")
    if len(chain) > MAX_DEPTH:
        raise RecipeError(f"{shown(chain[0])}: more than {MAX_DEPTH} nested includes; include fewer levels")
    text = read_text(path, MAX_RECIPE_BYTES, RecipeError, "recipe .yaml file", "the recipe", "recipe file not found")
    data = parse_yaml(text, shown(path))
    if data is None:
        raise RecipeError(f"{shown(path)}: the recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(f"{shown(path)}: a recipe must be a mapping of sections (task, student, ...), not {type(data).__name__}")
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str) or not include.strip():
        raise RecipeError(f"{shown(path)}: include: give one file name")
    base = _read_yaml(real.parent / include, chain + (real,))
    return _merge(base, data)


def _resolve(path: Path) -> Path:
    if name_problem(path):
        raise RecipeError(f"{shown(path)}: {name_problem(path)}")
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symlink loop
        raise RecipeError(f"{shown(path)}: too many levels of symbolic links; fix the link") from None


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as data (``yaml.safe_load`` rules), refusing what would crash or exhaust later stages:
    duplicate and unhashable keys, integers Python will not convert, alias cycles and bombs, deep nesting."""
    try:
        data = yaml.load(text, Loader=_RecipeLoader)  # safe_load's loader, with the refusals below
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{where}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{where}: nested more than {MAX_DEPTH} levels deep; flatten it") from None
    problem = _shape_problem(data)
    if problem:
        raise RecipeError(f"{where}: {problem}")
    return data


class _Refused(yaml.constructor.ConstructorError):
    """YAML that parses but that no recipe can hold."""


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice (YAML would silently keep the last) and keys
    that are lists or mappings (``? [a, b] : 1``), which no recipe field can be."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges are flattened by safe_load
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise _Refused(
                    None, None, f"a {type(key).__name__} as a mapping key; keys must be names or numbers",
                    key_node.start_mark)
            if key in seen:
                raise _Refused(
                    None, None, f"duplicate key '{key}' (give each key once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses int('9' * 5000): https://docs.python.org/3/library/stdtypes.html#int-max-str-digits
            raise _Refused(
                None, None, f"an integer of {len(node.value):,} digits; write a smaller number", node.start_mark) from None


_RecipeLoader.add_constructor("tag:yaml.org,2002:int", _RecipeLoader.construct_yaml_int)


def _shape_problem(data: Any) -> str | None:
    """Why ``data`` cannot be a recipe value: a list or mapping that contains itself (``a: &x [*x]``),
    nesting deeper than MAX_DEPTH, or more than MAX_VALUES values once shared aliases are expanded.
    Iterative, so no shape can exhaust Python's stack here."""
    sizes: dict[int, int] = {}  # id -> expanded size, for containers seen in full
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    open_ids: set[int] = set()  # containers on the current path: meeting one again is a cycle
    while stack:
        value, depth, done = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        items = list(value.values()) if isinstance(value, dict) else value
        if done:
            open_ids.discard(id(value))
            sizes[id(value)] = 1 + sum(sizes.get(id(v), 1) for v in items)
            if sizes[id(value)] > MAX_VALUES:
                return f"the recipe expands to more than {MAX_VALUES:,} values (YAML aliases?); write it out without nested aliases"
            continue
        if id(value) in open_ids:
            return "a YAML alias refers to a mapping or list that contains it (&x ... *x); write the value out"
        if id(value) in sizes:
            continue
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep; flatten it"
        open_ids.add(id(value))
        stack.append((value, depth, True))
        stack.extend((v, depth + 1, False) for v in items)
    return None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[a, b]``), or
    taken as text where they are not valid YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = [part.strip() for part in key.split(".")]
        if not sep or not key.strip():
            raise RecipeError(f"--set {_quoted(item)}: write overrides as key.path=value, e.g. --set loop.rounds=2")
        if not all(parts):
            raise RecipeError(f"--set {_quoted(item)}: the key path {key.strip()!r} has an empty name; "
                              "write names joined by single dots, e.g. --set loop.rounds=2")
        if len(parts) > MAX_DEPTH:
            raise RecipeError(f"--set {_quoted(item)}: the key path is nested more than {MAX_DEPTH} levels deep")
        value = _override_value(raw, item)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {_quoted(item)}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _quoted(item: str) -> str:
    """An override as messages quote it (a 5,000-digit value is cut short)."""
    return repr(item if len(item) <= 80 else item[:60] + "..." + item[-10:])


def _override_value(raw: str, item: str) -> Any:
    if not raw.strip():
        return ""
    try:
        value = yaml.load(raw, Loader=_RecipeLoader)
    except _Refused as exc:
        raise RecipeError(f"--set {_quoted(item)}: {exc.problem}") from None
    except yaml.YAMLError:
        return raw  # not YAML: the text itself (e.g. a template with ': ' in it)
    except RecursionError:
        raise RecipeError(f"--set {_quoted(item)}: nested more than {MAX_DEPTH} levels deep; flatten it") from None
    problem = _shape_problem(value)
    if problem:
        raise RecipeError(f"--set {_quoted(item)}: {problem}")
    return value


def parse_recipe(data: dict, source: str, registry: Registry, folder: str | Path | None = None) -> ResolvedRecipe:
    """Validate the recipe structure, then every component's params with its own model; relative paths in them
    are read against ``folder`` (the recipe's)."""
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
            params[role] = cls.Params.model_validate(spec.params, context={RECIPE_FOLDER: folder} if folder else None)
        except ValidationError as exc:
            raise RecipeError(format_validation_error(source, f"{role}.params", exc)) from None
        classes[role] = cls
    _check_cross_fields(recipe, classes, source)
    return ResolvedRecipe(recipe, source, classes, params)


def _check_cross_fields(recipe: Recipe, classes: dict[str, type], source: str) -> None:
    """The components must fit each other: the signals the selector needs, from this teacher and task."""
    from loopkit.signals import unmet_needs

    problem = unmet_needs(recipe.selector.name, getattr(classes["selector"], "needs", frozenset()),
                          (recipe.teacher.name, classes["teacher"]), (recipe.task.name, classes["task"]))
    if problem:
        raise RecipeError(f"{source}: selector.name: {problem}")


def load_recipe(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None,
                paths_from_folder: bool = True) -> ResolvedRecipe:
    """Read, merge, override and validate a recipe file. Loads no model. Relative paths in it are read from its
    folder (``paths_from_folder=False``: as written, e.g. a run's recipe.yaml, whose paths are the ones it ran on)."""
    if registry is None:
        from loopkit.plugins import registry as installed_registry

        registry = installed_registry()
    path = Path(path)
    data = _read_yaml(path.absolute(), ())
    data = apply_overrides(data, overrides or [], shown(path))
    return parse_recipe(data, shown(path), registry, path.absolute().parent if paths_from_folder else None)
