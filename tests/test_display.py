"""What a person watching a run sees: output off a terminal is never wrapped or cut; the live display."""

import os
import re
import subprocess
import sys

from conftest import TINY_RECIPE


def _not_a_terminal_env() -> dict[str, str]:
    """The environment of a CI job or a log file: no COLUMNS, no forced terminal."""
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}


def _deep(tmp_path, name: str):
    """A directory whose path is far wider than 80 columns."""
    return tmp_path / ("a-rather-long-folder-name-for-the-runs-of-this-project-" * 2) / name


def test_output_off_a_terminal_is_never_wrapped_or_cut(write_recipe, tmp_path):
    out = _deep(tmp_path, "runs")
    run = subprocess.run([sys.executable, "-m", "loopkit.cli", "run", str(write_recipe()), "-o", str(out), "--set", "loop.rounds=1"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, env=_not_a_terminal_env())
    assert run.returncode == 0, run.stdout + run.stderr
    (run_dir,) = out.iterdir()
    lines = run.stdout.splitlines()
    assert len(str(run_dir)) > 150 and "…" not in run.stdout, run.stdout
    assert f"run directory: {run_dir}" in lines, run.stdout
    events = [line for line in lines if line.startswith("round ")]
    assert len(events) == 2 and all(line.endswith("s)") for line in events), run.stdout  # each ends with its stage times
    assert any(line.strip() == run_dir.name for line in lines), run.stdout  # the table's title
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2 and all(line.endswith("│") and line.count("│") == 7 for line in rows), run.stdout  # six columns


def test_the_scaffold_command_to_copy_stays_one_line(tmp_path):
    where = _deep(tmp_path, "plugins")
    where.mkdir(parents=True)
    made = subprocess.run([sys.executable, "-m", "loopkit.cli", "plugin", "new", "--kind", "selector", "--name", "wide",
                           "--dir", str(where)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env=_not_a_terminal_env())
    root = where / "loopkit-selector-wide"
    assert made.returncode == 0 and made.stdout == f"created {root}; next: pip install -e '{root}[test]' && pytest {root}\n", made.stdout


def test_the_live_display_shows_the_round_of_n_eta_training_loss_and_spend(write_recipe, tmp_path):
    """The display's text, rendered at the end of each stage of a real tiny run."""
    import io
    import json
    from contextlib import contextmanager

    from rich.console import Console

    from loopkit.console import make_console
    from loopkit.loop import Loop
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir
    from loopkit.runner import RichProgress

    class Snapshots(RichProgress):
        seen: dict[tuple[int, str], str] = {}

        @contextmanager
        def stage(self, round_no, name, total=None):
            with super().stage(round_no, name, total) as bar:
                yield bar
                shot = Console(file=io.StringIO(), width=200)
                shot.print(self.bars.get_renderable())
                self.seen[round_no, name] = shot.file.getvalue()

    lines = io.StringIO()
    progress = Snapshots(make_console(file=lines))
    result = Loop(load_recipe(write_recipe()), progress).run(RunDir.create(tmp_path / "runs", "tiny"))
    seen = progress.seen
    assert seen[0, "evaluate"].startswith("round 0 of 2 · ETA after round 1 · spent 0 teacher calls\n"), seen
    assert "round 0 evaluate" in seen[0, "evaluate"] and "12/12" in seen[0, "evaluate"], seen
    losses = [json.loads((result.run_dir.round_dir(t) / "metrics.json").read_text())["train"]["loss_curve"] for t in (1, 2)]
    assert len(losses[0]) == json.loads((result.run_dir.round_dir(1) / "metrics.json").read_text())["train"]["steps"]
    assert seen[1, "train"].startswith(f"round 1 of 2 · ETA after round 1 · train loss {losses[0][-1]:.4g} · spent 6 teacher calls\n"), seen
    assert seen[2, "predict"].startswith("round 2 of 2 · ETA 0:00:"), seen  # known once round 1 took its time
    assert f"train loss {losses[1][-1]:.4g} · spent 12 teacher calls" in seen[2, "train"], seen
    said = lines.getvalue().splitlines()  # the lines a log gets: each round's, with the ETA while rounds are left
    assert re.fullmatch(r"round 1 of 2: accuracy .*\(predict .* evaluate \d+\.\ds\); ETA \d:\d\d:\d\d", said[1]), said
    assert said[2].startswith("round 2 of 2: accuracy") and said[2].endswith("s)"), said


def test_a_teacher_stage_moves_with_each_batch_of_the_teacher(write_recipe, tmp_path):
    """The hf teacher (batch_size 2) moves the generate bar per batch of calls, not once at the stage's end."""
    from contextlib import contextmanager

    from loopkit.loop import Loop
    from loopkit.progress import NullProgress
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir

    class Recorded(NullProgress):
        moves: dict[str, list[int]] = {}
        totals: dict[str, int] = {}

        @contextmanager
        def stage(self, round_no, name, total=None):
            moves, self.totals[name] = self.moves.setdefault(name, []), total

            class Stage:
                def advance(self, n=1):
                    moves.append(n)

                def set_total(self, total):
                    pass

                def show(self, name, value):
                    pass

            yield Stage()

    teacher = "teacher:\n  name: hf\n  params: {model: {name: tiny}, batch_size: 2, max_new_tokens: 8}\nselector:"
    recipe = write_recipe(TINY_RECIPE.replace("teacher:\n  name: reasoning-gym\nselector:", teacher))
    progress = Recorded()
    Loop(load_recipe(recipe, ["loop.rounds=1", "selector.name=random"]), progress).run(RunDir.create(tmp_path / "runs", "t"))
    generate = progress.moves["generate"]
    assert progress.totals["generate"] == 12 and sum(generate) == 12, generate  # 6 seeds, two calls each
    assert generate[:3] == [2, 2, 2], generate  # the question calls: three batches of two, each as it finished


def test_brackets_in_a_path_are_printed_as_they_are(tmp_path):
    """rich reads '[x]' as markup; a user's path or text never is."""
    from typer.testing import CliRunner

    from loopkit.cli import build_app

    recipe = tmp_path / "[draft]" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text(TINY_RECIPE, encoding="utf-8")
    result = CliRunner().invoke(build_app(), ["validate", str(recipe)])
    assert result.exit_code == 0 and f"OK {recipe}: task reasoning-gym" in result.output, result.output
