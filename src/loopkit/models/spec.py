"""A model named inside a component's params (``teacher.params.model: {name: hf, params: {path: ...}}``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from loopkit.component import format_validation_error, named_alone
from loopkit.errors import LoopkitError


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a registered model component, e.g. hf or tiny")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        """``model: tiny`` is short for ``model: {name: tiny}``, as for the recipe's own components."""
        return named_alone(value, "a model", "tiny", "{name: hf, params: {path: ...}}")

    @model_validator(mode="after")
    def _resolves(self, info: ValidationInfo) -> "ModelSpec":
        from loopkit.plugins import registry

        try:
            cls = registry().load("model", self.name)
        except LoopkitError as exc:
            raise ValueError(str(exc)) from None
        try:
            checked = cls.Params.model_validate(self.params, context=info.context)
        except ValidationError as exc:
            raise ValueError(format_validation_error("model", "params", exc).removeprefix("model: ")) from None
        # Paths resolved against the recipe's folder; every other value as given (the journal keys on them).
        self.params = {k: (getattr(checked, k) if isinstance(v, str) and isinstance(getattr(checked, k, None), str) else v)
                       for k, v in self.params.items()}
        return self

    @property
    def key(self) -> str:
        """What identifies the model in journal keys: its name and every param."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def component(self) -> type:
        """The model component class this spec names."""
        from loopkit.plugins import registry

        return registry().load("model", self.name)

    def build(self) -> Any:
        """The model component this spec names, with its params."""
        cls = self.component()
        return cls(cls.Params.model_validate(self.params))
