"""loopkit's own components, registered through the same hooks as any third-party plugin.

Targets are lazy ``"module:Class"`` strings: nothing heavy is imported until a recipe uses it.
"""

from loopkit.hookspecs import hookimpl


@hookimpl
def register_tasks(register):
    register("reasoning-gym", "loopkit.tasks.reasoning_gym:ReasoningGymTask")
    register("jsonl", "loopkit.tasks.jsonl:JsonlTask")
    register("hf-dataset", "loopkit.tasks.hf_dataset:HFDatasetTask")


@hookimpl
def register_models(register):
    register("tiny", "loopkit.models.tiny:TinyModel")
    register("hf", "loopkit.models.hf:HFModel")
    register("smollm2-135m-instruct", "loopkit.models.smollm2:SmolLM2Model")


@hookimpl
def register_teachers(register):
    register("reasoning-gym", "loopkit.teachers.reasoning_gym:ReasoningGymTeacher")
    register("hf", "loopkit.teachers.hf:HFTeacher")
    register("litellm", "loopkit.teachers.litellm:LiteLLMTeacher")
    register("vllm", "loopkit.teachers.vllm:VLLMTeacher")


@hookimpl
def register_selectors(register):
    register("random", "loopkit.selectors.random:RandomSelector")
    register("loss", "loopkit.selectors.loss:LossSelector")
    register("gold-loss", "loopkit.selectors.gold_loss:GoldLossSelector")
    register("entropy", "loopkit.selectors.entropy:EntropySelector")
    register("incorrect", "loopkit.selectors.incorrect:IncorrectSelector")
    register("badge", "loopkit.selectors.badge:BadgeSelector")
    register("kcenter", "loopkit.selectors.kcenter:KCenterSelector")
    register("reward", "loopkit.selectors.reward:RewardSelector")
    register("llm-judge", "loopkit.selectors.llm_judge:LLMJudgeSelector")
    register("lion", "loopkit.selectors.lion:LionSelector")


@hookimpl
def register_trainers(register):
    register("trl-sft", "loopkit.trainers.trl_sft:TRLSFTTrainer")
