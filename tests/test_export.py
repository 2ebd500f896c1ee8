"""`loopkit export`: the student loads with plain transformers and generates; the data with datasets."""

import json

import pytest
import yaml
from test_cli import assert_one_line_error, invoke

from loopkit.records import read_samples
from loopkit.testing import TINY_RECIPE


def run_tiny(tmp_path, *overrides):
    """One round of the tiny recipe through `loopkit run`, so recipe.yaml and manifest.json exist too."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_RECIPE, encoding="utf-8")
    args = ["run", str(recipe), "-o", str(tmp_path / "runs"), "--set", "loop.rounds=1"]
    result = invoke(*args, *[a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    return run


# Syllogisms only, trained long enough that the student answers "Yes" (the majority) to every question:
# some of its answers are right and some wrong, so an accuracy computed another way can disagree.
MAJORITY = ["task.params.generators={syllogism: {weight: 1}}", "task.params.pool_size=40", "task.params.test_size=16",
            "loop.per_round=24", "selector.name=random", "trainer.params.epochs=6", "trainer.params.learning_rate=0.01"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("export"), *MAJORITY)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """The run exported by the CLI, with what it printed."""
    out = tmp_path_factory.mktemp("exported") / "out"
    result = invoke("export", str(run), "--to", str(out), "--license", "apache-2.0")
    assert result.exit_code == 0, result.output
    return out, result.output


def generate(model_dir, prompt="Is it true?"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or out[0, -1] == tokenizer.eos_token_id
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])


def test_export_loads_with_plain_transformers_and_datasets(run, exported):
    from datasets import load_dataset, load_from_disk

    out, output = exported
    assert "round 1 student (full, card README.md)" in output and str(out / "data") in output.replace("\n", "")

    assert generate(out / "model", "Question: All cats are animals. Is it true?\nAnswer:").startswith("Yes")
    assert is_the_round_1_student(run, out / "model")

    samples = read_samples(run / "round-001" / "synthetic.jsonl")
    # the hub's layout (a card naming the data files) and save_to_disk's, from the same files
    hub, disk = load_dataset(str(out / "data"), split="train"), load_from_disk(str(out / "data"))["train"]
    assert hub.features == disk.features and hub.to_list() == disk.to_list()
    assert len(disk) == len(samples) > 0
    assert disk["question"] == [s.question for s in samples] and disk["round"] == [1] * len(samples)
    assert json.loads(disk[0]["meta"]) == samples[0].meta
    # TRL's columns: the exact prompt the student saw (no chat template: the task's prompt itself), and its answer
    assert disk["prompt"] == [f"Question: {s.question}\nAnswer:" for s in samples]
    assert disk["completion"] == [s.answer for s in samples] and "messages" not in disk.features

    card = (out / "data" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["tags"] == ["synthetic", "loopkit"] and front["license"] == "apache-2.0"
    assert front["configs"][0]["data_files"][0]["split"] == "train"
    assert "name: tiny-test" in card and '"transformers"' in card and '"loopkit": "0.1.0"' in card


def test_the_model_card_states_base_prompt_and_accuracy(run, exported):
    out, _ = exported
    card = (out / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "apache-2.0" and "base_model" not in front  # tiny is built in code: no hub id
    assert "built in code" in card and "No chat template" in card
    assert "```\nQuestion: {question}\nAnswer:\n```" in card and "Nothing follows `Answer:`, not even a space" in card
    accuracy = json.loads((run / "round-001" / "metrics.json").read_text())["accuracy"]
    assert f"| 1 | 24 | 24 | {accuracy:.1%} |" in card
    assert "lm_eval --model hf --model_args pretrained=model --include_path lm-eval --tasks loopkit_tiny_test_" in card
    assert str(run.parent) not in card


def test_the_export_and_the_run_respect_the_umask_so_a_teammate_can_read_them(run, exported):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for root in (run, exported[0]) for p in root.rglob("*") if p.is_file() and p.name != ".lock"]
    assert files and {p.stat().st_mode & 0o666 for p in files} <= {0o666 & ~mask, 0o644 & ~mask}  # sqlite: 0644


def test_trl_trains_on_the_exported_data_as_is(exported, tmp_path):
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from loopkit.models.tiny import TinyModel
    from loopkit.trainers.trl_sft import _checkpointing_field

    out, _ = exported
    data = load_dataset(str(out / "data"), split="train")
    model, tokenizer = TinyModel(TinyModel.Params(hidden_size=32, layers=1, heads=2, intermediate_size=64)).load(0)
    config = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=4, use_cpu=True,
                       bf16=False, report_to="none", save_strategy="no", disable_tqdm=True,
                       **{_checkpointing_field(SFTConfig): False})
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=data)
    # the loss is on the answer (and EOS) after loopkit's exact prompt, as loopkit's trainer has it
    first = trainer.train_dataset[0]
    prompt = tokenizer(f"Question: {data[0]['question']}\nAnswer:")["input_ids"]
    answer = tokenizer(data[0]["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert first["input_ids"] == prompt + answer and first["labels"] == [-100] * len(prompt) + answer
    assert trainer.train().global_step == 1


def _lm_eval(command: str):
    """Run the task an export's lm_eval command names, with that command's model arguments, in this process:
    (lm-eval's scores, its samples, and the model it built, to see the tokens it feeds)."""
    import shlex

    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    argv = shlex.split(command)
    value = {flag: argv[argv.index(flag) + 1] for flag in ("--model", "--model_args", "--include_path", "--tasks")}
    lm = get_model(value["--model"]).create_from_arg_string(value["--model_args"], {"device": "cpu"})
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[value["--tasks"]], log_samples=True, apply_chat_template="--apply_chat_template" in argv,
        task_manager=TaskManager(include_path=value["--include_path"], include_defaults=False))
    return results["results"][value["--tasks"]], results["samples"][value["--tasks"]], lm


def assert_lm_eval_matches_loopkit(command: str, run, student) -> float:
    """lm-eval feeds the student loopkit's tokens and reads its answers as loopkit did, answer by answer;
    its accuracy, which it returns, is loopkit's."""
    scores, samples, lm = _lm_eval(command)
    loopkit = {row["id"]: row for row in map(json.loads, (run / "round-001" / "eval.jsonl").read_text().splitlines())}
    assert len(samples) == len(loopkit)
    for sample in samples:
        row = loopkit[sample["doc"]["id"]]
        context = sample["arguments"][0][0]
        assert context == student.render(f"Question: {row['question']}\nAnswer:")
        assert lm.tok_batch_encode([context])[0][0].tolist() == student._encode([context])[0]
        assert sample["resps"] == [[row["prediction"]]] and sample["exact_match"] == float(row["correct"])
    metrics = json.loads((run / "round-001" / "metrics.json").read_text())
    assert scores["exact_match,match"] == pytest.approx(metrics["accuracy"])
    return metrics["accuracy"]


def test_lm_eval_scores_the_export_as_loopkit_did(run, exported):
    from transformers import AutoTokenizer

    from loopkit.inference import Inference

    out, output = exported
    command = next(line.strip() for line in output.splitlines() if line.strip().startswith("lm_eval "))
    accuracy = assert_lm_eval_matches_loopkit(command, run, Inference(None, AutoTokenizer.from_pretrained(out / "model")))
    assert 0 < accuracy < 1  # right and wrong answers: a reading that differs would show
    task = out / "lm-eval" / f"{command.split()[-1]}.yaml"
    assert str(out / "lm-eval" / "test.jsonl") in task.read_text()
    assert '\\nAnswer:", "reference"' in (out / "lm-eval" / "test.jsonl").read_text()  # no space after "Answer:"


def test_export_an_explicit_round_into_an_empty_directory(run, tmp_path):
    (tmp_path / "out").mkdir()
    result = invoke("export", str(run), "--round", "1", "--to", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model" / "config.json").exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--round", "7"], ["has no round 7", "complete rounds: [0, 1]"]),
        (["--round", "0"], ["round 0 of", "has no saved model"]),
    ],
)
def test_bad_rounds_are_one_line(run, tmp_path, args, fragments):
    assert_one_line_error(invoke("export", str(run), *args, "--to", str(tmp_path / "out")), *fragments)
    assert not (tmp_path / "out").exists()


def test_incomplete_round_and_bad_paths_are_one_line(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "round-001" / "COMPLETE").unlink()
    assert_one_line_error(invoke("export", str(copy), "--round", "1", "--to", str(tmp_path / "a")), "incomplete")
    assert_one_line_error(invoke("export", str(copy), "--to", str(tmp_path / "a")), "no complete round with a saved model")
    assert_one_line_error(invoke("export", str(tmp_path), "--to", str(tmp_path / "a")), "is not a loopkit run directory")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep me")
    assert_one_line_error(invoke("export", str(run), "--to", str(full)), "exists and is not an empty directory")
    assert (full / "x").read_text() == "keep me"


def is_the_round_1_student(run, model_dir):
    """The exported model computes what the run's round-1 student (restored as resume restores it) computes, which
    is not what the untrained student computes."""
    import torch
    from transformers import AutoModelForCausalLM

    from loopkit.recipe import load_recipe

    resolved = load_recipe(run / "recipe.yaml")
    source, seed = resolved.build("student"), resolved.recipe.seed
    base, tokenizer = source.load(seed)
    round_1 = resolved.build("trainer").load(run / "round-001" / "train" / "model", lambda: source.load(seed)[0])
    exported = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()  # as the tiny student
    ids = tokenizer("Question: Is it true?\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = [m(ids).logits for m in (exported, round_1, base)]
    return torch.allclose(logits[0], logits[1], atol=1e-5) and not torch.allclose(logits[1], logits[2], atol=1e-5)


def merged_matches_base_plus_adapter(merged_dir, base, adapter, tokenizer):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    with_adapter = PeftModel.from_pretrained(base, adapter).eval()
    ids = tokenizer("All cats are animals.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-5)


def test_lora_adapter_export_and_merge(tmp_path):
    from loopkit.models.tiny import TinyModel

    run = run_tiny(tmp_path, "trainer.params.lora={r: 4, alpha: 8}")
    result = invoke("export", str(run), "--to", str(tmp_path / "adapter"))
    assert result.exit_code == 0 and "(adapter, card README.md)" in result.output, result.output
    adapter = tmp_path / "adapter" / "model"
    assert (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists()
    # no hub id to name: the code-built marker (null) stays, and the card and the CLI say to merge for lm-eval
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert "lm_eval " not in result.output and "export with `loopkit export --merge`" in " ".join(result.output.split())
    assert "built in code" in (adapter / "README.md").read_text()
    # load_dataset caches by directory name and card: this data/ must not be read as another export's data/
    from datasets import load_dataset

    questions = [s.question for s in read_samples(run / "round-001" / "synthetic.jsonl")]
    assert load_dataset(str(tmp_path / "adapter" / "data"), split="train")["question"] == questions
    params = yaml.safe_load(TINY_RECIPE)["student"]["params"]

    # the tiny student is built in code, so its adapter names no base: --merge rebuilds it from recipe.yaml
    result = invoke("export", str(run), "--merge", "--to", str(tmp_path / "rebuilt"))
    assert result.exit_code == 0 and "(merged, card README.md)" in result.output, result.output
    assert "lm_eval --model hf --model_args pretrained=" in result.output
    assert isinstance(generate(tmp_path / "rebuilt" / "model"), str)
    base, tokenizer = TinyModel(TinyModel.Params(**params)).load(3)
    assert merged_matches_base_plus_adapter(tmp_path / "rebuilt" / "model", base, adapter, tokenizer)

    # an adapter that names a base directory is merged into that base
    base, tokenizer = TinyModel(TinyModel.Params(**params)).load(3)
    base.save_pretrained(tmp_path / "base")
    config = json.loads((run / "round-001" / "train" / "model" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base")
    (run / "round-001" / "train" / "model" / "adapter_config.json").write_text(json.dumps(config))
    result = invoke("export", str(run), "--merge", "--to", str(tmp_path / "merged"))
    assert result.exit_code == 0 and "(merged, card README.md)" in result.output, result.output
    assert not (tmp_path / "merged" / "model" / "adapter_config.json").exists()
    assert merged_matches_base_plus_adapter(tmp_path / "merged" / "model", base, adapter, tokenizer)

    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (run / "round-001" / "train" / "model" / "adapter_config.json").write_text(json.dumps(config))
    assert_one_line_error(invoke("export", str(run), "--merge", "--to", str(tmp_path / "m")), "cannot be loaded offline")


# A chat template for the character-level tokenizer: the user's turn, then the assistant's.
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture
def hub_chat_model(tmp_path, monkeypatch):
    """The tiny model with a chat template, as the hub id ``loopkit-test/tiny-chat`` in a hub cache of its own."""
    import huggingface_hub.constants

    from loopkit.models.tiny import TinyModel

    cache = tmp_path / "hub"
    repo = cache / "models--loopkit-test--tiny-chat"
    snapshot = repo / "snapshots" / ("0" * 40)
    model, tokenizer = TinyModel(TinyModel.Params(hidden_size=32, layers=1, heads=2, intermediate_size=64)).load(0)
    tokenizer.chat_template = CHAT
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return "loopkit-test/tiny-chat"


def test_a_chat_student_adapter_names_its_hub_base_and_lm_eval_reproduces_it(hub_chat_model, tmp_path):
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from loopkit.inference import Inference

    run = run_tiny(tmp_path, "student.name=hf", f"student.params={{path: {hub_chat_model}}}",
                   "selector.name=random", "trainer.params.lora={r: 4, alpha: 8}", "trainer.params.learning_rate=0.01")
    out = tmp_path / "out"
    result = invoke("export", str(run), "--to", str(out))
    assert result.exit_code == 0 and "(adapter, card README.md)" in result.output, result.output

    # the adapter names its base by hub id, and nothing in the export names a path of this machine
    config = json.loads((out / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == hub_chat_model
    for path in (out / "model").iterdir():
        assert str(tmp_path) not in path.read_text(errors="replace"), path
    card = (out / "model" / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["base_model"] == hub_chat_model and "The chat template is applied" in card

    # TRL's conversational columns: the task's prompt as the user's turn, the answer as the assistant's
    data = load_dataset(str(out / "data"), split="train")
    sample = read_samples(run / "round-001" / "synthetic.jsonl")[0]
    assert data[0]["prompt"] == [{"role": "user", "content": f"Question: {sample.question}\nAnswer:"}]
    assert data[0]["completion"] == [{"role": "assistant", "content": sample.answer}]
    assert data[0]["messages"] == data[0]["prompt"] + data[0]["completion"]

    # lm-eval loads the base from the hub, the adapter with peft=, and applies the chat template as loopkit did
    command = next(line.strip() for line in result.output.splitlines() if line.strip().startswith("lm_eval "))
    assert f"pretrained={hub_chat_model},peft=" in command and command.endswith("--apply_chat_template")
    assert_lm_eval_matches_loopkit(command, run, Inference(None, AutoTokenizer.from_pretrained(out / "model")))
