"""Named levels of one reasoning-gym generator (the `levels` testbed): each item knows its level (its sub-task), and
the procedural teacher keeps it (tests/test_recipes_dir.py validates recipes/levels.yaml)."""

from loopkit.tasks.reasoning_gym import ReasoningGymTask
from loopkit.teachers.reasoning_gym import ReasoningGymTeacher

LEVELS = {
    "short": {"generator": "spell_backward", "weight": 2, "config": {"min_word_len": 3, "max_word_len": 3}},
    "long": {"generator": "spell_backward", "config": {"min_word_len": 8, "max_word_len": 8}},
    "syllogism": {"weight": 1},
}


def test_one_generator_at_several_levels_and_its_offspring_keep_their_level():
    task = ReasoningGymTask(ReasoningGymTask.Params(generators=LEVELS, pool_size=40, test_size=12))
    data = task.load(0)
    by_level = {}
    for s in data.pool:
        by_level.setdefault(s.subtask, []).append(s)
    assert {k: len(v) for k, v in by_level.items()} == {"short": 20, "long": 10, "syllogism": 10}
    assert all(s.meta["generator"] == "spell_backward" and len(s.final) == 3 for s in by_level["short"])
    assert all(len(s.final) == 8 for s in by_level["long"]) and by_level["syllogism"][0].meta["generator"] == "syllogism"
    assert all(task.check(s, s.final) for s in data.test)  # the generator's own verifier checks a level's items

    teacher = ReasoningGymTeacher()
    teacher.bind(task)
    seeds = by_level["short"][:3] + by_level["long"][:3] + by_level["syllogism"][:2]
    for g in teacher.generate(seeds, 1, 7):
        assert g.sample is not None and g.sample.subtask == g.seed.subtask
        assert g.sample.meta["config"] == g.seed.meta["config"] and g.sample.question != g.seed.question
