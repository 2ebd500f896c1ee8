import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # test modules import litellm; never fetch at import

ROOT = Path(__file__).resolve().parents[1]

# A recipe small enough to run two rounds in seconds on a CPU.
TINY_RECIPE = """\
name: tiny-test
seed: 3
task:
  name: reasoning-gym
  params:
    generators: {syllogism: {weight: 1}, family_relationships: {weight: 1}}
    pool_size: 24
    test_size: 12
student:
  name: tiny
  params: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}
teacher:
  name: reasoning-gym
selector:
  name: loss
trainer:
  name: trl-sft
  params: {epochs: 1, batch_size: 8, learning_rate: 0.003}
loop:
  rounds: 2
  per_round: 6
  max_new_tokens: 6
  batch_size: 16
"""


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe (the tiny one by default, or given text) and return its path."""

    def write(text: str = TINY_RECIPE, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def run_recipe(path, tmp_path, overrides=()):
    """Run a recipe file through the core loop (no CLI) into ``tmp_path/runs``."""
    from loopkit.loop import Loop
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir

    resolved = load_recipe(path, list(overrides))
    run_dir = RunDir.create(tmp_path / "runs", resolved.recipe.name)
    return Loop(resolved).run(run_dir), resolved
