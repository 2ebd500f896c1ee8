"""trainer.params.sft: any field of TRL's SFTConfig passes through (checked against SFTConfig's own fields),
loopkit's CPU-safe defaults standing unless overridden; the fields loopkit sets itself are refused."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app


def invoke(*args):
    return CliRunner().invoke(build_app(), [*map(str, args)], env={"COLUMNS": "200"})


def test_sft_fields_reach_trl_logging_steps_shows_in_the_loss_log_and_report_to_tensorboard_writes_or_says_why(
        write_recipe, tmp_path):
    result = invoke("run", write_recipe(), "-o", tmp_path / "runs", "--set", "loop.rounds=1",
                    "--set", "trainer.params.batch_size=2",
                    "--set", "trainer.params.sft={logging_steps: 1, max_grad_norm: 0.5, report_to: tensorboard}")
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        assert result.exit_code == 1
        assert result.output.startswith("Error: trainer.params.sft.report_to: TensorBoard needs its package")
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
        result = invoke("run", write_recipe(), "-o", tmp_path / "runs", "--set", "loop.rounds=1",
                        "--set", "trainer.params.batch_size=2", "--set", "trainer.params.sft={logging_steps: 1, max_grad_norm: 0.5}")
    else:
        assert list((tmp_path / "runs").glob("*/round-001/train/runs/*/events.out.tfevents.*"))
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    train = json.loads((run / "round-001" / "metrics.json").read_text())["train"]
    assert train["steps"] > 1 and len(train["loss_curve"]) == train["steps"]  # a loss logged at every step (default: 10)


@pytest.mark.parametrize("sft, expect", [
    ("{logging_step: 5}", "trainer.params.sft: logging_step: not a field of trl's SFTConfig; did you mean logging_steps"),
    ("{output_dir: /tmp/x}", "trainer.params.sft: output_dir: loopkit sets this SFTConfig field itself; loopkit trains"),
    ("{num_train_epochs: 2}", "num_train_epochs: loopkit sets this SFTConfig field itself; set trainer.params.epochs"),
])
def test_an_unknown_or_loopkit_owned_sft_field_is_refused_in_one_line_before_any_model_loads(write_recipe, sft, expect):
    result = invoke("validate", write_recipe(), "--set", f"trainer.params.sft={sft}")
    assert result.exit_code == 1
    assert expect in result.output and len(result.output.strip().splitlines()) == 1
