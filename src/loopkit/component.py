"""What every component (task, model, teacher, selector, trainer) has in common."""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

RECIPE_FOLDER = "recipe_folder"  # validation context: the folder relative paths in a recipe are relative to


class Params(BaseModel):
    """Base for a component's ``params:`` block; unknown keys are errors, and so are inf and nan.

    A non-finite number passes every bound (``nan > 0`` is False, so ``gt=0`` cannot catch it in
    pydantic's order of checks; ``.inf`` satisfies ``ge=1``) and crashes deep in a run instead.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def in_recipe_folder(value: Any, info: ValidationInfo) -> Any:
    """A relative path (or the paths in a list or mapping) read against the recipe's folder, as ``include:`` is:
    a recipe means the same files from any working directory. Validated without a recipe (``context``), as is."""
    folder = (info.context or {}).get(RECIPE_FOLDER)
    if folder is None:
        return value
    if isinstance(value, list):
        return [in_recipe_folder(v, info) for v in value]
    if isinstance(value, dict):
        return {k: in_recipe_folder(v, info) for k, v in value.items()}
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith("~"):
        return value
    return os.path.normpath(os.path.join(folder, value))


def local_in_recipe_folder(value: Any, info: ValidationInfo) -> Any:
    """A name that is a local path or a hub id (``org/name``): a path where it is one from the recipe's folder
    (or is written as one, ``./x``), else the hub id as written."""
    folder = (info.context or {}).get(RECIPE_FOLDER)
    if folder is None or not isinstance(value, str):
        return value
    local = in_recipe_folder(value, info)
    return local if value.startswith((".", os.sep)) or os.path.exists(local) else value


# Fields of a component's Params that name files: ``seed_file: RecipePath``. Relative paths in a recipe
# resolve against its folder (and are recorded resolved in the run's recipe.yaml).
RecipePath = Annotated[str, AfterValidator(in_recipe_folder)]
LocalOrHub = Annotated[str, AfterValidator(local_in_recipe_folder)]


def named_alone(value: Any, what: str, name: str, mapping: str) -> Any:
    """A component given by its name alone (``selector: loss``) as the mapping it is short for (``{name: loss}``);
    ValueError for anything but a name or a mapping, showing both forms (``name``, ``mapping``) of ``what``."""
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"write {what} as a name ({name}) or a mapping ({mapping}), not {kind}")
    return value


class Component:
    """A class registered under a kebab-case name, configured by its nested ``Params`` model."""

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def missing(cls) -> str | None:
        """What the component needs that is not installed here, as "PACKAGE (how to install it)"; None if nothing.
        ``list-plugins`` shows it, ``validate`` says it, and ``run`` refuses before loading anything."""
        return None


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(source: str, prefix: str, exc: ValidationError) -> str:
    """The first problem pydantic found, as one line: ``source: dotted.field.path: what is wrong`` (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(filter(None, [prefix, _location(first["loc"]) if first["loc"] else ""])) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] in ("model_type", "model_attributes_type"):  # `loop: 3`, `--set loop=3`
        message = (f"this is a section: give a mapping of its fields (e.g. --set {where}.FIELD=VALUE), "
                   f"not {type(first.get('input')).__name__}")
    elif first["type"] == "finite_number":
        message = "Input should be a finite number (not inf or nan)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {where}: {message}{more}"
