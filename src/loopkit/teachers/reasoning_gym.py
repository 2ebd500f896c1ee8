"""A procedural teacher: for each seed, a fresh item from the same generator and config (so the
offspring keeps its seed's level, its ``subtask``).

Free, exact and offline: the "similar question" is a new draw from the seed's generator, and its
answer (with worked steps where the generator provides them) is correct by construction.
As a judge it is procedural too: the task's verifier gives 10 to an answer that verifies and 1
to one that does not; as LION's referee its own answer is the seed's exact reference answer.
"""

from __future__ import annotations

from loopkit.errors import RecipeError
from loopkit.records import Sample, normalize_question
from loopkit.seeding import derive_seed
from loopkit.tasks.base import Task
from loopkit.tasks.reasoning_gym import SOURCE, ReasoningGymTask, make_dataset, to_sample
from loopkit.teachers.base import Generation, Judgement, Teacher

BEST, WORST = 10.0, 1.0


class ReasoningGymTeacher(Teacher):
    def bind(self, task: Task) -> None:
        if not isinstance(task, ReasoningGymTask):
            raise RecipeError("teacher 'reasoning-gym' only serves task 'reasoning-gym'; choose an LLM teacher for other tasks")
        self.task = task

    def _grade(self, seed: Sample, answer: str | None) -> float:
        return BEST if answer is not None and self.task.check(seed, answer) else WORST

    def judge(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        return Judgement([self._grade(s, a) for s, a in zip(seeds, answers)], calls=len(seeds))

    def referee(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        # The verdict does not depend on the order the two answers are shown in, but a referee is
        # asked both ways, so each seed costs two calls.
        gaps = [self._grade(s, s.answer) - self._grade(s, a) for s, a in zip(seeds, answers)]
        return Judgement(gaps, calls=2 * len(seeds))

    def generate(self, seeds: list[Sample], round_no: int, random_seed: int) -> list[Generation]:
        return [self._one(s, round_no, random_seed, i) for i, s in enumerate(seeds)]

    def _one(self, seed: Sample, round_no: int, random_seed: int, index: int) -> Generation:
        generator, config = seed.meta["generator"], seed.meta["config"]
        dataset = make_dataset(generator, config, 1, derive_seed(random_seed, "teacher", round_no, index, seed.id))
        sample = to_sample(dataset[0], generator, config, seed.subtask, source=SOURCE, seed_id=seed.id,
                           round=round_no)
        if sample.answer is None:
            return Generation(seed, None, f"generator '{generator}' gives no reference answer", calls=1)
        if normalize_question(sample.question) == normalize_question(seed.question):
            return Generation(seed, None, "new question repeats its seed", calls=1)
        return Generation(seed, sample, calls=1)
