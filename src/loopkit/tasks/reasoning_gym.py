"""Tasks from reasoning-gym's seeded procedural generators, checked by each generator's verifier.

A mix is keyed by name: a generator's name, or the name of a level of one (``generator:`` says
which), so one generator can appear at several difficulties, a config each. Every item's sub-task
(``Sample.subtask``) is its key, so accuracy is reported per key, and an offspring has its seed's.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator, model_validator

from loopkit.checkers import Checker
from loopkit.component import Params
from loopkit.errors import DataError
from loopkit.records import Sample, normalize_question
from loopkit.seeding import derive_seed
from loopkit.tasks.base import Task, TaskData, format_answer

SOURCE = "reasoning-gym"


class GeneratorSpec(Params):
    generator: str | None = Field(None, description="the reasoning-gym generator, when the key names a level of it "
                                                    "(default: the key itself)")
    weight: float = Field(1.0, gt=0, description="share of the pool and test split")
    config: dict[str, Any] = Field(default_factory=dict, description="the generator's own config fields")


def _config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def _coerce_enums(name: str, config: dict) -> dict:
    """YAML gives strings where a generator's config wants Enum members (aiw's task_types)."""
    import enum
    import typing

    from reasoning_gym.factory import DATASETS

    hints = typing.get_type_hints(DATASETS[name][1])
    out = dict(config)
    for key, value in config.items():
        hint = hints.get(key)
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            out[key] = [inner(v) for v in value] if isinstance(value, list) else inner(value)
    return out


@lru_cache(maxsize=256)
def _dataset(name: str, config_key: str, size: int, seed: int):
    import reasoning_gym

    return reasoning_gym.create_dataset(name, size=size, seed=seed, **_coerce_enums(name, json.loads(config_key)))


def make_dataset(name: str, config: dict, size: int, seed: int):
    return _dataset(name, _config_key(config), size, seed)


def to_sample(entry: dict, generator: str, config: dict, level: str | None = None, **fields: Any) -> Sample:
    """A reasoning-gym item as a Sample; the generator's metadata is kept for its verifier, and its
    level (the mix's key; default: the generator's name) as its sub-task."""
    final = entry["answer"]
    metadata = json.loads(json.dumps(entry.get("metadata", {}), default=str))
    steps = metadata.pop("answer_cot", None)
    return Sample.create(
        entry["question"],
        format_answer(str(final), steps) if final is not None else None,
        final=None if final is None else str(final),
        subtask=level or generator,
        meta={"generator": generator, "config": config, "rg": metadata},
        **fields,
    )


def _allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` items across generators by weight (largest remainder, deterministic)."""
    norm = sum(weights.values())
    exact = {name: total * w / norm for name, w in weights.items()}
    counts = {name: int(x) for name, x in exact.items()}
    for name in sorted(exact, key=lambda n: counts[n] - exact[n])[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


class ReasoningGymTask(Task):
    """Any reasoning-gym generator, or a weighted mix; pool and test split come from disjoint seeds.

    Pool questions that also occur in the test split are removed, so the test split stays unseen.
    """

    answer_format = "the final answer alone, exactly in the form the question asks for"
    # An LLM teacher sees the seed's answer too: a generator's answer format is easier to copy than to guess.
    teacher_templates = {
        "question": (
            "Here is an example question and its answer:\n\nQuestion: {question}\nAnswer: {answer}\n\n"
            "Write one new question of the same kind, format and difficulty. Reply with the new question only."
        ),
    }

    class Params(Params):
        generators: dict[str, GeneratorSpec] = Field(
            min_length=1, description="generator name (or a level's name, with generator: its generator) -> "
                                      "{weight, config}; a list of names means equal weights"
        )
        pool_size: int = Field(500, ge=1, le=1_000_000, description="seed questions in the pool")
        test_size: int = Field(200, ge=1, le=1_000_000, description="held-out test questions")

        @field_validator("generators", mode="before")
        @classmethod
        def _names_to_specs(cls, value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return {name: {} for name in value}
            return value

        @model_validator(mode="after")
        def _generators_exist(self) -> "ReasoningGymTask.Params":
            from reasoning_gym.factory import DATASETS

            for key, spec in self.generators.items():
                name = spec.generator or key
                if name not in DATASETS:
                    close = difflib.get_close_matches(name, DATASETS, n=3)
                    hint = f" Did you mean: {', '.join(close)}?" if close else " See reasoning_gym.factory.DATASETS."
                    where = f"level '{key}': " if spec.generator else ""
                    raise ValueError(f"{where}unknown reasoning-gym generator '{name}'.{hint}")
                try:
                    make_dataset(name, spec.config, 1, 0)
                except Exception as exc:
                    where = f"level '{key}' (generator '{name}')" if spec.generator else f"generator '{name}'"
                    raise ValueError(f"{where} rejects its config: {exc}") from None
            return self

    def load(self, seed: int) -> TaskData:
        weights = {name: spec.weight for name, spec in self.params.generators.items()}
        test = self._draw(_allocate(self.params.test_size, weights), seed, "test")
        test_questions = {normalize_question(s.question) for s in test}
        pool = [
            s for s in self._draw(_allocate(self.params.pool_size, weights), seed, "pool")
            if normalize_question(s.question) not in test_questions
        ]
        if not pool:
            raise DataError("task reasoning-gym: the seed pool is empty after removing test questions; raise pool_size")
        return TaskData(pool=pool, test=test)

    def _draw(self, counts: dict[str, int], seed: int, split: str) -> list[Sample]:
        samples = []
        for key, count in counts.items():
            if count == 0:
                continue
            spec = self.params.generators[key]
            generator = spec.generator or key
            dataset = make_dataset(generator, spec.config, count, derive_seed(seed, split, key))
            samples.extend(to_sample(dataset[i], generator, spec.config, key) for i in range(count))
        return samples

    def lm_eval_checker(self) -> tuple[Checker, str | None]:
        """reasoning-gym's default verifier gives full marks only to the reference itself, which lm-eval can
        check; a generator with its own verifier may accept other forms (case, number formats, ...)."""
        from reasoning_gym.dataset import ProceduralDataset

        own = [name for name, spec in self.params.generators.items()
               if type(make_dataset(name, spec.config, 1, 0)).score_answer is not ProceduralDataset.score_answer]
        gap = (f"reasoning-gym's own verifier of {', '.join(own)} may accept answers other than the reference "
               "(e.g. in another case or number format); lm-eval compares the final answer verbatim") if own else None
        return Checker(), gap

    def check(self, sample: Sample, completion: str) -> bool:
        generator, config = sample.meta["generator"], sample.meta["config"]
        entry = {"question": sample.question, "answer": sample.final, "metadata": sample.meta["rg"]}
        prediction = self.extract(completion)
        try:
            score = make_dataset(generator, config, 1, 0).score_answer(prediction, entry)
        except Exception:  # a verifier that chokes on a malformed prediction has not been answered
            return False
        return score >= 1.0 - 1e-9
