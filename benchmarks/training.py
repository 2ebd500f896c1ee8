"""Training throughput: loopkit's `trl-sft` trainer vs a plain PyTorch loop, same model, data and schedule.

    python benchmarks/training.py [--samples 400] [--repeat 2]

Both fine-tune a fresh copy of `recipes/logic.yaml`'s student (the 0.27M-param tiny Llama) on the
same synthetic samples (reasoning-gym's teacher on the recipe's pool), with the recipe's trainer
settings: completion-only loss, AdamW, cosine schedule with 5% warmup, batch 8, length-grouped
batches, 4 epochs. The plain loop is the floor: tokenize, pad each batch, forward, backward, step.
Wall time includes each trainer's set-up (TRL builds its dataset). Arms are interleaved and the
best of ``--repeat`` is kept, so a load change hits both alike. Target: TRL overhead <= 30%.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data(samples: int):
    from loopkit.prepare import load_task_data
    from loopkit.recipe import load_recipe

    resolved = load_recipe(ROOT / "recipes" / "logic.yaml")
    task, teacher = resolved.build("task"), resolved.build("teacher")
    teacher.bind(task)
    pool = load_task_data(task, resolved).pool
    generations = teacher.generate([pool[i % len(pool)] for i in range(samples)], round_no=1, random_seed=0)
    synthetic = [g.sample for g in generations if g.sample is not None]
    return resolved, [task.prompt(s.question) for s in synthetic], [s.answer for s in synthetic]


def trl_arm(resolved, prompts, completions) -> float:
    from loopkit.progress import NullProgress

    model, tokenizer = resolved.build("student").load(resolved.recipe.seed)
    trainer = resolved.build("trainer")
    trainer.params = trainer.params.model_copy(update={"save_model": False})
    with tempfile.TemporaryDirectory() as out, NullProgress().stage(1, "train") as stage:
        clock = time.perf_counter()
        trainer.train(model, tokenizer, prompts, completions, Path(out), seed=0, stage=stage)
        return time.perf_counter() - clock


def plain_arm(resolved, prompts, completions) -> float:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    p = resolved.params["trainer"]
    model, tokenizer = resolved.build("student").load(resolved.recipe.seed)
    clock = time.perf_counter()
    rows = []
    for prompt, completion in zip(prompts, completions):
        head = tokenizer(prompt)["input_ids"]
        tail = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((head + tail, [-100] * len(head) + tail))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # length-grouped, like group_by_length
    batches = [order[i : i + p.batch_size] for i in range(0, len(order), p.batch_size)]
    steps = int(p.epochs) * len(batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(p.warmup_steps * steps), steps)
    rng = random.Random(0)
    model.train()
    for _ in range(int(p.epochs)):
        rng.shuffle(batches)
        for batch in batches:
            width = max(len(rows[i][0]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                tokens, target = rows[i]
                ids[row, : len(tokens)] = torch.tensor(tokens)
                labels[row, : len(target)] = torch.tensor(target)
                mask[row, : len(tokens)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    import transformers
    import trl

    from loopkit.runner import quiet_libraries

    quiet_libraries()
    resolved, prompts, completions = data(args.samples)
    epochs = int(resolved.params["trainer"].epochs)
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}; {len(prompts)} samples x {epochs} epochs")
    best = {"plain PyTorch loop": float("inf"), "loopkit trl-sft": float("inf")}
    for _ in range(args.repeat):
        best["plain PyTorch loop"] = min(best["plain PyTorch loop"], plain_arm(resolved, prompts, completions))
        best["loopkit trl-sft"] = min(best["loopkit trl-sft"], trl_arm(resolved, prompts, completions))
    floor = best["plain PyTorch loop"]
    print(f"\n{'arm':<22}{'seconds':>9}{'samples/s':>11}{'overhead':>10}")
    for name, seconds in best.items():
        print(f"{name:<22}{seconds:>9.1f}{len(prompts) * epochs / seconds:>11.1f}{seconds / floor - 1:>+10.0%}")


if __name__ == "__main__":
    main()
