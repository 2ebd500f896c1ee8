"""Training under ``accelerate launch``: N processes train, the loop stays one driver process.

The driver writes the round's start into ``<train dir>/launch/`` (the model as it is, pickled by
torch, so that a student built in code, an adapter being continued and the attention
implementation come back exactly; the tokenizer; the training pairs; the trainer's params), runs
``accelerate launch [--config_file F] --num_processes N -m loopkit.trainers.launch JOB``, replays
the main process's progress on its own display, and loads what the main process saved with
``SFTTrainer.save_model`` (which gathers FSDP / DeepSpeed shards). All else the launch prints goes
to ``launch/output.log``. A stop (Ctrl-C, SIGTERM) ends the launched processes with the driver.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from loopkit.errors import LoopkitError
from loopkit.progress import Stage

PROGRESS = "loopkit-progress "  # a line the main process prints: a Stage call for the driver to replay
STOP_SECONDS = 10.0  # how long launched processes get to end after SIGTERM before SIGKILL


def launch_command(params: Any, job: Path) -> list[str]:
    """``accelerate launch`` for ``job``: the config file's setup, or DDP over ``processes`` (torchrun underneath)."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if params.accelerate_config:
        command += ["--config_file", str(params.accelerate_config)]
    else:
        command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if params.processes > 1 or not params.accelerate_config:
        command += ["--num_processes", str(params.processes)]
    return [*command, "--main_process_port", str(_free_port()), "--module", __name__, str(job)]


def train_launched(trainer: Any, model: Any, tokenizer: Any, prompts: list[str], completions: list[str],
                   output_dir: Path, seed: int, stage: Stage) -> tuple[Any, dict]:
    import torch

    work = output_dir / "launch"
    work.mkdir(parents=True, exist_ok=True)
    torch.save(model, work / "start.pt")
    tokenizer.save_pretrained(work / "tokenizer")
    with open(work / "data.jsonl", "w") as f:
        f.writelines(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in zip(prompts, completions))
    job = work / "job.json"
    job.write_text(json.dumps({"params": trainer.params.model_dump(mode="json"), "seed": seed, "output_dir": str(output_dir)}))
    _run(launch_command(trainer.params, job), work / "output.log", stage, trainer.params.processes)
    (work / "start.pt").unlink()  # as large as the model; the data and the log stay for a look afterwards
    metrics = json.loads((work / "result.json").read_text())
    trained = _load_into(trainer, model, output_dir / "model")
    if not trainer.params.save_model:
        shutil.rmtree(output_dir / "model")
    return trained, metrics


def _run(command: list[str], log_path: Path, stage: Stage, processes: int) -> None:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    with open(log_path, "w") as log:
        # A session of its own: a terminal's Ctrl-C reaches the driver, which ends the launch as below.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        try:
            for line in proc.stdout:
                if line.startswith(PROGRESS):
                    name, args = json.loads(line[len(PROGRESS):])
                    getattr(stage, name, lambda *a: None)(*args)
                else:
                    log.write(line)
                    log.flush()
            code = proc.wait()
        finally:
            _end(proc)
    if code != 0:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        raise LoopkitError(f"training under accelerate launch failed (exit code {code}): {last[:300]} "
                           f"(the whole output: {log_path})")


def _end(proc: subprocess.Popen) -> None:
    """Stop the launched process group if it is still running (the driver was stopped or failed)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _load_into(trainer: Any, start: Any, directory: Path) -> Any:
    """The trained student: the saved weights (or adapter) loaded into the start model the driver still holds."""
    from loopkit.trainers.trl_sft import is_peft_model

    if (directory / "adapter_config.json").exists() and is_peft_model(start):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(start, load_file(directory / "adapter_model.safetensors"))  # continuing its adapter
        return start.eval()
    return trainer.load(directory, lambda: start)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Announcer:
    """The main process's Stage: prints each call for the driver to replay on its display."""

    def __getattr__(self, name: str):
        return lambda *args: print(PROGRESS + json.dumps([name, args]), flush=True)


class _Quiet:
    def __getattr__(self, name: str):
        return lambda *args: None


def main(job_path: str) -> None:
    """One launched process: train on the job's data from its start; the main process saves the result."""
    import torch
    from transformers import AutoTokenizer

    from loopkit.trainers.trl_sft import TRLSFTTrainer

    job_file = Path(job_path)
    work, job = job_file.parent, json.loads(job_file.read_text())
    output_dir = Path(job["output_dir"])
    trainer = TRLSFTTrainer(TRLSFTTrainer.Params.model_validate(job["params"]))
    model = torch.load(work / "start.pt", weights_only=False)  # written by our own driver just before
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    rows = [json.loads(line) for line in (work / "data.jsonl").read_text().splitlines()]
    main_process = int(os.environ.get("RANK", "0")) == 0
    sft = trainer.sft_trainer(model, tokenizer, [r["prompt"] for r in rows], [r["completion"] for r in rows],
                              output_dir, job["seed"], _Announcer() if main_process else _Quiet())
    result = sft.train()
    sft.save_model(str(output_dir / "model"))  # every process takes part (FSDP gathers); the main one writes
    if sft.accelerator.is_main_process:
        tokenizer.save_pretrained(output_dir / "model")
        (work / "result.json").write_text(json.dumps(trainer.metrics(sft, result, len(rows))))
    sft.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
