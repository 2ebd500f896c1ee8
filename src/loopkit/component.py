"""What every component (task, model, teacher, selector, trainer) has in common."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Params(BaseModel):
    """Base for a component's ``params:`` block; unknown keys are errors, and so are inf and nan.

    A non-finite number passes every bound (``nan > 0`` is False, so ``gt=0`` cannot catch it in
    pydantic's order of checks; ``.inf`` satisfies ``ge=1``) and crashes deep in a run instead.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Component:
    """A class registered under a kebab-case name, configured by its nested ``Params`` model."""

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()


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
