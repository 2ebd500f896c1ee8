"""Any causal LM that transformers can load: a hub id (online) or a local directory."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import Field, field_validator

from loopkit.component import LocalOrHub, Params
from loopkit.device import best_device, resolve_dtype
from loopkit.errors import LoopkitError
from loopkit.models.base import ModelSource


class HFModel(ModelSource):
    class Params(Params):
        path: LocalOrHub = Field(description="hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) or local directory")
        dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$",
                           description="weights' dtype; auto: bfloat16 where the hardware has it, else float32")
        revision: str | None = Field(None, description="a hub revision (branch, tag or commit) of the model")

        @field_validator("path")
        @classmethod
        def _loadable(cls, path: str) -> str:
            return check_model_path(path)

    def pretrained_path(self) -> str:
        return self.params.path

    def public_name(self) -> str | None:
        """The hub id the path is, or the one a hub cache snapshot directory holds (…/models--org--name/snapshots/…)."""
        path = self.params.path
        cached = re.search(r"models--([^/\\]+)--([^/\\]+)[/\\]snapshots[/\\]", path)
        if cached:
            return f"{cached.group(1)}/{cached.group(2)}"
        if Path(path).expanduser().exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) or path.startswith("."):
            return None  # a directory on this machine (or one that was here)
        return path

    def _local_dir(self) -> Path | None:
        local = Path(self.params.path).expanduser()
        return local if (local / "config.json").is_file() else None

    def tokenizer(self):
        if self._local_dir() is None:
            return None
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.params.path, revision=self.params.revision)
        except Exception:  # unknown here; `run` reports a tokenizer that cannot load, with the model
            return None

    def context_window(self) -> int | None:
        local = self._local_dir()
        try:
            config = json.loads((local / "config.json").read_text(encoding="utf-8")) if local else {}
        except (OSError, ValueError):
            return None
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(config.get(key), int) and config[key] > 0:
                return config[key]
        return None

    def weight_bytes(self) -> int | None:
        """The checkpoint's size on disk (its dtype; more if loaded in a wider one)."""
        local = self._local_dir()
        files = [*local.glob("*.safetensors"), *local.glob("pytorch_model*.bin")] if local else []
        return sum(f.stat().st_size for f in files) or None

    def load(self, seed: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = self.params
        try:
            tokenizer = AutoTokenizer.from_pretrained(p.path, revision=p.revision)
            model = AutoModelForCausalLM.from_pretrained(p.path, revision=p.revision, dtype=resolve_dtype(p.dtype))
        except (OSError, ValueError) as exc:
            where = "a local directory" if Path(p.path).exists() else "not a local directory, and the hub could not serve it"
            raise LoopkitError(
                f"model '{p.path}' could not be loaded ({where}): {str(exc).splitlines()[0]}; "
                "download it first (huggingface-cli download) or give a local path"
            ) from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model.to(best_device()).eval(), tokenizer


def check_model_path(path: str) -> str:
    """``path`` if ``from_pretrained`` can load it here, else ValueError saying what to do.

    A local directory must hold a model (config.json). Offline, a hub id must be in the local hub
    cache: otherwise the mistake surfaces only when the model loads, deep in a run.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ValueError(f"'{path}' is a directory without a model (no config.json); give the directory "
                             "save_pretrained wrote (or a hub id)")
        return path
    if not _offline():
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


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
