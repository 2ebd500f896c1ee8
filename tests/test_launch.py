"""Training in processes of its own (``trainer.params.processes``, accelerate launch with gloo here)
and LoRA students that go on training their adapter (``retrain: continue``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from loopkit.loop import Loop
from loopkit.recipe import load_recipe
from loopkit.rundir import RunDir
from loopkit.testing import TINY_RECIPE

LORA_CONTINUE = ["trainer.params.lora={r: 4, alpha: 8}", "loop.retrain=continue"]


class Recorded:
    """A Progress that keeps every stage call (the loop's display gets the same)."""

    def __init__(self):
        self.calls: list[tuple[int, str, str, tuple]] = []

    @contextmanager
    def stage(self, round_no, name, total=None):
        outer = self

        class _Stage:
            def __getattr__(self, method):
                return lambda *args: outer.calls.append((round_no, name, method, args))

        yield _Stage()

    def round_done(self, row):
        pass

    def note(self, message):
        pass


def run(tmp_path, *overrides, progress=None):
    (tmp_path / "recipe.yaml").write_text(TINY_RECIPE)
    resolved = load_recipe(tmp_path / "recipe.yaml", list(overrides))
    run_dir = RunDir.create(tmp_path / "runs", resolved.recipe.name)
    return Loop(resolved, progress).run(run_dir), run_dir


def adapter(run_dir, t):
    return (run_dir.model_dir(t) / "adapter_model.safetensors").read_bytes()


def test_a_lora_student_with_retrain_continue_goes_on_training_its_adapter(tmp_path):
    result, run_dir = run(tmp_path, *LORA_CONTINUE)  # TRL refuses a PeftModel with a new peft_config: round 2 failed
    assert [run_dir.metrics(t)["train"]["steps"] for t in (1, 2)] == [1, 2]
    assert adapter(run_dir, 1) != adapter(run_dir, 2) and len(result.accuracies) == 3


@pytest.mark.slow  # two launches of two processes: ~1 min on 2 idle cores
def test_two_training_processes_under_accelerate_launch_train_the_student_the_loop_goes_on_with(tmp_path):
    """LoRA with retrain: continue covers both ways back: round 1 starts from the plain student (the
    saved adapter goes onto it), round 2 from the adapter it trained (its weights are loaded in place)."""
    progress = Recorded()
    result, run_dir = run(tmp_path, "trainer.params.processes=2", *LORA_CONTINUE, progress=progress)
    for t in (1, 2):
        train = run_dir.metrics(t)["train"]
        # 12 examples at batch 8 per process: one global batch of 16 in two processes (two steps in one)
        assert train["steps"] == 1 and train["examples"] == 6 * t and train["tokens"] > 0
        launch = run_dir.train_dir(t) / "launch"
        assert (launch / "output.log").exists() and not (launch / "start.pt").exists()
        replayed = [(m, a) for r, s, m, a in progress.calls if r == t and s == "train"]
        assert replayed == [("set_total", (1,)), ("advance", (1,))]  # the main process's progress, on the driver's display
    assert adapter(run_dir, 1) != adapter(run_dir, 2) and len(result.accuracies) == 3

    # the driver went on with what the launched processes trained: a resume loads the same from disk
    (run_dir.path / "round-002" / "COMPLETE").unlink()
    resumed = Loop(load_recipe(tmp_path / "recipe.yaml", ["trainer.params.processes=2", *LORA_CONTINUE])).run(run_dir, resume=True)
    assert resumed.accuracies == result.accuracies


def test_a_failing_launch_is_one_line_naming_its_log(tmp_path):
    from loopkit.errors import LoopkitError

    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\n")  # no distributed_type: accelerate refuses it
    with pytest.raises(LoopkitError, match=r"accelerate launch failed .*distributed_type.*\(the whole output: .*output.log\)"):
        run(tmp_path, f"trainer.params.accelerate_config={config}", "loop.rounds=1")


@pytest.mark.parametrize("name", ["multi-gpu", "fsdp"])
def test_the_shipped_accelerate_configs_load_as_accelerate_reads_them(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type in ("MULTI_GPU", "FSDP") and config.num_processes == 8
