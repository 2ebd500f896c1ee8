"""What the own-answer signals cost on top of predict: a second forward pass (before) vs the generation pass (after).

    python benchmarks/own_answer.py                          # recipes/logic.yaml's student and seed pool
    python benchmarks/own_answer.py --threads 1 --repeat 5   # steadier on a shared CPU
    python benchmarks/own_answer.py --set task.params.pool_size=200 --set loop.per_round=50   # overrides, as for `run`

Side by side, interleaved, best of ``--repeat``, on the recipe's (untrained) student and pool:
  * predict alone: the student's greedy answers (``Inference.generate``);
  * before: predict, then ``student_signals`` over the answers alone, which scores them with a
    forward pass over prompt + answer (how the loop computed ``own_loss`` / ``entropy`` until issue 14);
  * after: ``signals.predict`` (the losses from generate's own logits), then ``student_signals``
    with them (what the loop does now), for ``loss`` and for ``entropy``.
Each row's time is divided by predict alone's (target for "after": at most 1.1x).
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import ROOT, best_times  # noqa: E402


def figures(recipe_path: Path, repeat: int, overrides: list[str]) -> tuple[int, dict[str, float], float]:
    from loopkit.inference import Inference
    from loopkit.prepare import load_task_data
    from loopkit.recipe import load_recipe
    from loopkit.signals import predict, student_signals

    resolved = load_recipe(recipe_path, overrides)
    recipe = resolved.recipe
    task = resolved.build("task")
    pool = load_task_data(task, resolved).pool
    model, tokenizer = resolved.build("student").load(recipe.seed)
    student = Inference(model, tokenizer, recipe.loop.batch_size, recipe.loop.max_new_tokens)
    prompts = [task.prompt(s.question) for s in pool]

    def before(signal):
        needs = frozenset({signal})
        return lambda: student_signals(student, task, pool, student.generate(prompts), needs)

    def after(signal):
        needs = frozenset({signal})

        def run():
            answers, own = predict(student, task, pool, needs)
            return student_signals(student, task, pool, answers, needs, own=own)

        return run

    fns = {
        "predict alone (greedy answers)": lambda: student.generate(prompts),
        "before: predict + forward pass, loss": before("own_loss"),
        "after:  predict (generation pass), loss": after("own_loss"),
        "before: predict + forward pass, entropy": before("entropy"),
        "after:  predict (generation pass), entropy": after("entropy"),
    }
    answers = student.generate(prompts)
    cut = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) >= recipe.loop.max_new_tokens for a in answers)
    return len(pool), best_times(repeat, fns), cut / len(pool)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "logic.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="a recipe override, a.b=c")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n, times, cut = figures(args.recipe, args.repeat, args.overrides)
    print(f"recipe {args.recipe.name}, {n} seeds, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{cut:.0%} of the answers run to max_new_tokens (the generation pass then takes one extra step)")
    base = next(iter(times.values()))
    print(f"\n{'pass over the pool':<45} {'seconds':>8} {'samples/s':>10} {'vs predict':>11}")
    for name, seconds in times.items():
        print(f"{name:<45} {seconds:>8.2f} {n / seconds:>10.0f} {seconds / base:>10.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
