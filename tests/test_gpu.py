"""The GPU tier: `pytest -m gpu` where CUDA is present (skipped elsewhere). bf16 training on a GPU,
the trained student on the GPU, and training in two processes on two GPUs when there are two."""

import json

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device here", allow_module_level=True)

from loopkit.device import bf16_supported  # noqa: E402
from loopkit.testing import run_recipe  # noqa: E402


def test_the_loop_trains_and_evaluates_on_the_gpu_with_bf16_where_it_has_bf16(tmp_path):
    torch.cuda.reset_peak_memory_stats()
    result = run_recipe(tmp_path)
    assert len(result.accuracies) == 3 and result.run_dir.metrics(2)["train"]["steps"] > 0
    assert torch.cuda.max_memory_allocated() > 0  # the student was trained and run on the GPU
    assert bf16_supported() == torch.cuda.is_bf16_supported()  # TRL's bf16 is on exactly where the GPU has it


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_train_each_round_under_accelerate_launch(tmp_path):
    result = run_recipe(tmp_path, "trainer.params.processes=2")
    for t in (1, 2):
        assert result.run_dir.metrics(t)["train"]["steps"] >= 1 and (result.run_dir.train_dir(t) / "launch" / "output.log").exists()
    assert len(result.accuracies) == 3


@pytest.mark.parametrize("trainer", [[], ["trainer.params.lora={r: 8}"]], ids=["full", "lora"])
def test_the_vllm_student_engine_sleeps_while_the_student_trains_and_answers_as_the_hf_path(tmp_path, trainer):
    pytest.importorskip("vllm")
    # heads of 64 dimensions; the tiny student keeps float32 weights (bf16 is autocast in training)
    student = ["student.params={hidden_size: 128, layers: 1, heads: 2, intermediate_size: 128}", "loop.retrain=continue"]
    hf = run_recipe(tmp_path / "hf", *student, *trainer)
    on_vllm = run_recipe(tmp_path / "vllm", *student, *trainer, "loop.engine=vllm")
    # GPU kernels differ between the engines more than CPU ones (tensor cores, fused attention): near-ties may flip
    for t in (0, 1, 2):
        answers = [[json.loads(line)["prediction"] for line in (run.run_dir.round_path(t) / "eval.jsonl").read_text().splitlines()]
                   for run in (hf, on_vllm)]
        assert sum(a == b for a, b in zip(*answers)) >= 0.9 * len(answers[0])
    for t in (1, 2):
        assert on_vllm.run_dir.metrics(t)["train"]["steps"] > 0  # it trained on the GPU the sleeping engine freed
