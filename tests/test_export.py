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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("export"))


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


def test_export_loads_with_plain_transformers_and_datasets(run, tmp_path):
    from datasets import load_from_disk

    result = invoke("export", str(run), "--to", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "round 1 student (full)" in result.output and str(tmp_path / "out" / "data") in result.output.replace("\n", "")

    assert isinstance(generate(tmp_path / "out" / "model"), str)
    assert is_the_round_1_student(run, tmp_path / "out" / "model")

    samples = read_samples(run / "round-001" / "synthetic.jsonl")
    data = load_from_disk(str(tmp_path / "out" / "data"))
    assert len(data) == len(samples) > 0
    assert data["question"] == [s.question for s in samples] and data["round"] == [1] * len(samples)
    assert json.loads(data[0]["meta"]) == samples[0].meta

    card = (tmp_path / "out" / "data" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["tags"] == ["synthetic", "loopkit"]
    assert "name: tiny-test" in card and '"transformers"' in card and '"loopkit": "0.1.0"' in card


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
    assert result.exit_code == 0 and "(adapter)" in result.output, result.output
    adapter = tmp_path / "adapter" / "model"
    assert (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists()
    params = yaml.safe_load(TINY_RECIPE)["student"]["params"]

    # the tiny student is built in code, so its adapter names no base: --merge rebuilds it from recipe.yaml
    result = invoke("export", str(run), "--merge", "--to", str(tmp_path / "rebuilt"))
    assert result.exit_code == 0 and "(merged)" in result.output, result.output
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
    assert result.exit_code == 0 and "(merged)" in result.output, result.output
    assert not (tmp_path / "merged" / "model" / "adapter_config.json").exists()
    assert merged_matches_base_plus_adapter(tmp_path / "merged" / "model", base, adapter, tokenizer)

    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (run / "round-001" / "train" / "model" / "adapter_config.json").write_text(json.dumps(config))
    assert_one_line_error(invoke("export", str(run), "--merge", "--to", str(tmp_path / "m")), "cannot be loaded offline")
