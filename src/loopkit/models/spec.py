"""A model named inside a component's params (``teacher.params.model: {name: hf, params: {path: ...}}``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopkit.component import format_validation_error
from loopkit.errors import LoopkitError


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a registered model component, e.g. hf or tiny")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolves(self) -> "ModelSpec":
        from loopkit.plugins import registry

        try:
            cls = registry().load("model", self.name)
        except LoopkitError as exc:
            raise ValueError(str(exc)) from None
        try:
            cls.Params.model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(format_validation_error("model", "params", exc).removeprefix("model: ")) from None
        return self

    @property
    def key(self) -> str:
        """What identifies the model in journal keys: its name and every param."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def build(self) -> Any:
        """The model component this spec names, with its params."""
        from loopkit.plugins import registry

        cls = registry().load("model", self.name)
        return cls(cls.Params.model_validate(self.params))
