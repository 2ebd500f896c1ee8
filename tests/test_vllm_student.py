"""The student's answers on a resident vLLM engine (``loop.engine: vllm``) against the transformers path,
the reference (opt in: pytest -m vllm; set-up in the README's "Optional test tiers").

A run on either engine must make the same answers, the same own-answer losses (within float
tolerance), hence the same picks and the same accuracy, round after round: the engine follows the
student as it trains (a full fine-tune's weights reloaded, a LoRA student's adapter per round).
"""

import json
import tempfile
from pathlib import Path

import pytest

from loopkit.student_engine import ENGINE_DIR_PREFIX
from loopkit.testing import run_recipe

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

# Heads of 64 dimensions (vLLM's CPU attention takes 32 and up); training continues, so every round changes
# the weights the engine must follow.
STUDENT = ["student.params=" + json.dumps({"hidden_size": 128, "layers": 1, "heads": 2, "intermediate_size": 128}),
           "loop.retrain=continue", "loop.rounds=2"]


def _round_files(run: Path, t: int) -> dict:
    rows = lambda name: [json.loads(line) for line in (run / f"round-{t:03d}" / name).read_text().splitlines()]
    return {"eval": rows("eval.jsonl"), **({"selected": rows("selected.jsonl"), "signals": rows("pool_signals.jsonl")} if t else {})}


def _engine_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(ENGINE_DIR_PREFIX + "*"))


@pytest.mark.parametrize("trainer", [[], ["trainer.params.lora=" + json.dumps({"r": 8, "alpha": 16})]], ids=["full", "lora"])
def test_a_run_on_the_vllm_engine_answers_picks_and_scores_as_the_hf_run(tmp_path, trainer):
    before = _engine_dirs()
    hf = run_recipe(tmp_path / "hf", *STUDENT, *trainer)
    on_vllm = run_recipe(tmp_path / "vllm", *STUDENT, *trainer, "loop.engine=vllm")
    assert on_vllm.accuracies == hf.accuracies
    for t in range(3):
        expected, got = _round_files(hf.run_dir.path, t), _round_files(on_vllm.run_dir.path, t)
        assert [r["prediction"] for r in got["eval"]] == [r["prediction"] for r in expected["eval"]]
        if t:
            assert got["selected"] == expected["selected"]
            losses = [(a["own_loss"], b["own_loss"]) for a, b in zip(expected["signals"], got["signals"])]
            assert max(abs(a - b) for a, b in losses) < 1e-4
            assert len({a for a, _ in losses}) > 1  # real, varying losses
    assert _engine_dirs() == before  # the engine's model directory is removed with it
