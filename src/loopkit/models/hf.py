"""Any causal LM that transformers can load: a hub id (online) or a local directory."""

from __future__ import annotations

from pathlib import Path

import os

from pydantic import Field, field_validator

from loopkit.component import Params
from loopkit.device import best_device, resolve_dtype
from loopkit.errors import LoopkitError
from loopkit.models.base import ModelSource


class HFModel(ModelSource):
    class Params(Params):
        path: str = Field(description="hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) or local directory")
        dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$")
        revision: str | None = None

        @field_validator("path")
        @classmethod
        def _reachable_offline(cls, path: str) -> str:
            """Offline, a path that is neither a directory nor in the local hub cache can never load: say so now."""
            if Path(path).expanduser().is_dir() or not _offline():
                return path
            from huggingface_hub import try_to_load_from_cache

            try:
                cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
            except Exception:  # not even a valid hub id
                cached = False
            if not cached:
                raise ValueError(
                    f"'{path}' is neither a local directory nor a model in the local hub cache, and the hub is "
                    "offline (HF_HUB_OFFLINE); download it where there is network (huggingface-cli download "
                    f"{path} --local-dir DIR) and give DIR, or use a registered model (loopkit list-plugins)"
                )
            return path

    def pretrained_path(self) -> str:
        return self.params.path

    def load(self, seed: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = self.params
        try:
            tokenizer = AutoTokenizer.from_pretrained(p.path, revision=p.revision)
            model = AutoModelForCausalLM.from_pretrained(p.path, revision=p.revision, dtype=resolve_dtype(p.dtype))
        except OSError as exc:
            where = "a local directory" if Path(p.path).exists() else "not a local directory, and the hub could not serve it"
            raise LoopkitError(
                f"model '{p.path}' could not be loaded ({where}): {str(exc).splitlines()[0]}; "
                "download it first (huggingface-cli download) or give a local path"
            ) from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model.to(best_device()).eval(), tokenizer


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
