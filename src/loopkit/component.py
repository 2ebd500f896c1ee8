"""What every component (task, model, teacher, selector, trainer) has in common."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


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
