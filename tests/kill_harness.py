"""Run a recipe and SIGKILL the process at a chosen point (the kill tests' subject; not a test module).

    python kill_harness.py RECIPE OUT POINT [--set a.b=v ...]

POINT: predict, score, train, evaluate (the first progress step of that stage in round 2),
generate (entering round 2's second batch of teacher calls, after its first batch was answered) or
artifact (half-way through writing round 2's synthetic.jsonl, before the rename).
"""

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from loopkit.loop import Loop
from loopkit.progress import NullProgress
from loopkit.recipe import load_recipe
from loopkit.rundir import RunDir
from loopkit.runner import start_run_dir
from loopkit.teachers.llm import LLMTeacher

ROUND = 2


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingStage:
    def advance(self, n=1):
        die()

    def set_total(self, total):
        pass


class KillAt(NullProgress):
    def __init__(self, point):
        self.point = point

    @contextmanager
    def stage(self, round, name, total=None):
        # generate's point is the patched _call below: its bar now moves per answered call, in the first batch
        if (round, name) == (ROUND, self.point) and self.point != "generate":
            yield KillingStage()
        else:
            with super().stage(round, name, total) as bar:
                yield bar


def kill_in_generation():
    calls = {"n": 0}
    original = LLMTeacher._call

    def counting(self, prompts, params):
        calls["n"] += 1
        if calls["n"] == 2 * ROUND:  # round 1 makes two batches (questions, answers); round 2's second
            die()
        return original(self, prompts, params)

    LLMTeacher._call = counting


def kill_in_artifact():
    original = RunDir.write_text

    def half_written(self, relative, text):
        if str(relative).endswith(f"round-{ROUND:03d}/synthetic.jsonl"):
            target = self.path / relative
            (target.parent / f".{target.name}.x.tmp").write_text(text[: len(text) // 2])
            die()
        return original(self, relative, text)

    RunDir.write_text = half_written


def main():
    recipe, out, point, *rest = sys.argv[1:]
    overrides = [rest[i + 1] for i in range(0, len(rest), 2)]
    if point == "generate":
        kill_in_generation()
    if point == "artifact":
        kill_in_artifact()
    resolved = load_recipe(recipe, overrides)
    loop = Loop(resolved, KillAt(point))
    run_dir = start_run_dir(resolved, Path(out))
    print(run_dir.path, flush=True)
    loop.run(run_dir)


if __name__ == "__main__":
    main()
