"""``loopkit run`` around the core loop: prepare, a live display, and what to say when a run stops."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from loopkit import stopping
from loopkit.console import on_terminal, table as Table
from loopkit.environment import describe
from loopkit.errors import LoopkitError
from loopkit.loop import Loop, RunResult
from loopkit.plugins import registry
from loopkit.prepare import prepare
from loopkit.progress import NullProgress
from loopkit.recipe import ResolvedRecipe
from loopkit.records import RoundRow
from loopkit.rundir import RECIPE, RunDir


class RichProgress(NullProgress):
    """Live: where the run is (round k of N, ETA, training loss, spend) above a bar per stage; a line per round."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.first = self.last = self.round = None  # the rounds this process runs, and the one running now
        self.round_started = time.monotonic()
        self.round_seconds: list[float] = []  # of this process's finished training rounds (round 0 only evaluates)
        self.loss: float | None = None  # the latest training loss
        self.calls, self.usd = 0, 0.0
        self.bars = StatusBars(self.status, TextColumn("[bold]round {task.fields[round]}[/] {task.description:<9}"),
                          BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=console, transient=True, disable=not on_terminal(console))  # logs get lines

    def plan(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    @contextmanager
    def stage(self, round_no: int, name: str, total: int | None = None) -> Iterator["_Bar"]:
        if round_no != self.round:
            self.round, self.round_started = round_no, time.monotonic()
        task = self.bars.add_task(name, total=total, round=round_no)
        try:
            yield _Bar(self, task)
        finally:
            self.bars.remove_task(task)

    def spent(self, teacher_calls: int, usd: float) -> None:
        self.calls, self.usd = teacher_calls, usd

    def eta(self) -> float | None:
        """Seconds until the last round ends: the mean time of the training rounds finished so far, for each one left."""
        if not self.round_seconds or self.round is None or self.last is None:
            return None
        per_round = sum(self.round_seconds) / len(self.round_seconds)
        return max(per_round * (self.last - self.round + 1) - (time.monotonic() - self.round_started), 0.0)

    def status(self) -> str:
        """The line above the bars, e.g. ``round 2 of 3 · ETA 0:01:10 · train loss 1.234 · spent 24 teacher calls, $0.0310``."""
        if self.round is None or self.last is None:
            return ""
        eta = self.eta()
        parts = [f"round {self.round} of {self.last}",
                 f"ETA {_clock(eta)}" if eta is not None else f"ETA after round {max(self.first, 1)}"]
        if self.loss is not None:
            parts.append(f"train loss {self.loss:.4g}")
        parts.append(f"spent {self.calls} teacher calls" + (f", ${self.usd:.4f}" if self.usd else ""))
        return " · ".join(parts)

    def round_done(self, row: RoundRow) -> None:
        if row.round >= 1:
            self.round_seconds.append(time.monotonic() - self.round_started)
        self.spent(row.teacher_calls, row.usd)
        times = ", ".join(f"{k} {v:.1f}s" for k, v in row.seconds.items())
        spend = f"{row.teacher_calls} teacher calls"
        if row.teacher_tokens:
            spend += f", {row.teacher_tokens:,} tokens, ${row.usd:.4f}"
        subtasks = f" ({subtask_accuracies(row)})" if len(row.subtasks) > 1 else ""  # one is the accuracy itself
        of = f" of {self.last}" if self.last is not None else ""
        eta = None
        if self.last is not None and row.round < self.last:  # the next round's clock starts now
            self.round, self.round_started = row.round + 1, time.monotonic()
            eta = self.eta()
        self.console.print(
            f"round {row.round}{of}: accuracy [bold]{accuracy_text(row)}[/]{subtasks} with {row.samples} synthetic samples; "
            f"{kept_line(row)}spent {spend} ({times})" + (f"; ETA {_clock(eta)}" if eta is not None else ""),
            highlight=False,
        )

    def note(self, message: str) -> None:
        if message.startswith("warning:"):  # the loop's warnings (e.g. a round that dropped most samples) stand out
            self.console.print(f"[bold yellow]warning:[/]{escape(message[len('warning:'):])}", highlight=False)
        else:
            self.console.print(message, highlight=False, markup=False)


class StatusBars(Progress):
    """rich's bars with the run's status line above them."""

    def __init__(self, status: Callable[[], str], *columns: Any, **kwargs: Any) -> None:
        self.status = status
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[Any]:
        status = self.status()
        if status:
            yield Text(status)
        yield from super().get_renderables()


def kept_line(row: RoundRow) -> str:
    """A generating round's kept and dropped samples and its top drop reasons ("" for a round that generated none)."""
    if not row.kept and not row.dropped:
        return ""
    top = "; ".join(f"{n} x {escape(_short(reason))}" for reason, n in row.drop_reasons.items())
    return f"kept {row.kept} of {row.kept + row.dropped}" + (f" (dropped: {top})" if top else "") + "; "


def _short(reason: str, most: int = 80) -> str:
    return reason if len(reason) <= most else reason[: most - 3] + "..."


class _Bar:
    def __init__(self, display: RichProgress, task: int) -> None:
        self.display, self.task = display, task

    def advance(self, n: int = 1) -> None:
        self.display.bars.advance(self.task, n)

    def set_total(self, total: int) -> None:
        self.display.bars.update(self.task, total=total)

    def show(self, name: str, value: float) -> None:
        if name == "loss":
            self.display.loss = value


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def quiet_libraries() -> None:
    """Library chatter (tokenizer warnings, dataset maps) would bury the progress display."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    warnings.filterwarnings("ignore", module="trl")
    warnings.filterwarnings("ignore", module="torch")


def start_run_dir(resolved: ResolvedRecipe, output: Path | None, command: dict | None = None) -> RunDir:
    """A new run directory (locked by this process) with the resolved recipe and the manifest (versions, seed, and
    ``command``: the command line and its --set overrides, secrets masked)."""
    manifest = {"seed": resolved.recipe.seed, "recipe": resolved.source, **(command or {}), **describe(registry())}
    return RunDir.start(output or resolved.recipe.output_dir, resolved.recipe.name, _recipe_text(resolved), manifest)


def _recipe_text(resolved: ResolvedRecipe) -> str:
    """recipe.yaml: the resolved recipe, saying where it came from."""
    return f"# resolved from {resolved.source}\n" + yaml.safe_dump(resolved.resolved_dict(), sort_keys=False)


def _tidy(run_dir: RunDir) -> str:
    """Remove the unfinished round (atomic files and the committed journal keep the rest consistent).

    Only the process that holds the run may: one refused by the lock leaves the holder's round alone.
    """
    if run_dir.held():
        run_dir.discard_incomplete()
    return f"continue with: loopkit run --resume {run_dir.path}"


def _kept_rows(run_dir: RunDir) -> list[RoundRow]:
    """The rows of the complete rounds, as their metrics.json files hold them ([] if they cannot be read now)."""
    try:
        return [RoundRow.from_json(run_dir.metrics(k)) for k in range(run_dir.complete_rounds() + 1)]
    except (OSError, LoopkitError):
        return []


def report_stop(console: Console, run_dir: RunDir) -> None:
    """What an interrupted run kept, what its teacher calls cost, and how to continue it."""
    rows = _kept_rows(run_dir)
    if rows:
        console.print(results_table(RunResult(run_dir, rows)))
        kept = f"rounds 0-{rows[-1].round} are complete and kept in {run_dir.path}"
    else:
        kept = f"no round completed in {run_dir.path}"
    spent = f"{rows[-1].teacher_calls if rows else 0} teacher calls in complete rounds"
    t = run_dir.journal_totals()
    if t is not None:
        spent += f"; journal: {t['calls']} answered calls, {t['tokens']} tokens, ${t['usd']:.4f}"
    stop = stopping.requested()
    why = f" by {stop.name}" if stop else ""
    console.print(f"stopped{why}: {kept} ({spent}); continue with: loopkit run --resume {run_dir.path}",
                  highlight=False, markup=False, soft_wrap=True)  # one line to copy, on a terminal too
    if stop and stop.abandoned:
        console.print(f"[yellow]warning:[/] the grace period ({stopping.grace()}s) ended with {stop.abandoned} teacher "
                      "call(s) still in flight; they were abandoned, and the resumed run may send (and pay for) them again",
                      highlight=False)


def accuracy_text(row: RoundRow) -> str:
    """'41.7% ± 14.2%': the accuracy with its binomial standard error over the test items (where recorded)."""
    return f"{row.accuracy:.1%}" + (f" ± {row.accuracy_se:.1%}" if row.accuracy_se is not None else "")


def subtask_accuracies(row: RoundRow) -> str:
    """'syllogism 50.0%, aiw 33.3%': the accuracy per sub-task, briefly."""
    return ", ".join(f"{name} {s['accuracy']:.1%}" for name, s in row.subtasks.items())


def results_table(result: RunResult) -> Table:
    """Per round: samples trained on, kept / made (a generating round's samples), calls, accuracy ± its binomial
    standard error over the test items, time (the round lines and ``report`` give the accuracy per sub-task); the
    caption gives the top drop reasons of the rounds that dropped any. Titled by the run's name: its full path
    (printed above it) would stretch the table."""
    reasons = [f"round {row.round} dropped {row.dropped} of {row.kept + row.dropped}: "
               + "; ".join(f"{n} x {_short(reason)}" for reason, n in row.drop_reasons.items())
               for row in result.rows if row.dropped]
    caption = "\n".join(["± the binomial standard error over the test items", *reasons])
    table = Table("round", "samples", "kept / made", "teacher calls", "test accuracy", "round time",
                  title=result.run_dir.path.name, caption=escape(caption), caption_justify="left")
    for row in result.rows:
        made = row.kept + row.dropped
        table.add_row(str(row.round), str(row.samples), f"{row.kept} / {made}" if made else "", str(row.teacher_calls),
                      accuracy_text(row), f"{sum(row.seconds.values()):.1f}s")
    return table


def resumable(run_dir: Path, recipe: Path | None) -> Path:
    """The recipe to resume ``run_dir`` with: ``recipe`` if given (checked later to be the run's), else the run's own.

    The run's recipe.yaml must be the one it started with (manifest.json records its fingerprint).
    """
    run = RunDir(run_dir)
    # round-000 or the manifest: a run stopped before its round 0 completed has no round left, and resumes from the start.
    if not run.has_recipe() or not (run.has_manifest() or run.has_round(0)):
        raise LoopkitError(f"--resume {run_dir}: not a loopkit run directory (no recipe.yaml with manifest.json or round-000); "
                           "give the directory `loopkit run` printed")
    run.check_free()  # a second process on a run stops at once, having changed nothing
    run.recipe()  # damaged, or changed since the run started: refused here
    return recipe if recipe is not None else run_dir / RECIPE  # as given: messages name it the way the user did


# What a resumed run may change: how far it goes, never what its complete rounds did. A field not here (the
# seed, the data, a component or its params, the round size...) changes what the rounds done would have made.
GROWABLE = {
    "loop.rounds": "raised, in mode active (a static mode plans its rounds from the count)",
    "budget.samples": "raised or removed",
    "budget.teacher_calls": "raised or removed",
    "budget.teacher_tokens": "raised or removed",
    "budget.usd": "raised or removed",
    "loop.stop_after_empty_rounds": "any value (it decides only when to stop)",
}


def _may_grow(field: str, old, new, mode: str) -> bool:
    if field == "loop.rounds":
        return mode == "active" and isinstance(old, int) and isinstance(new, int) and new > old
    if field.startswith("budget."):
        return new is None or (old is not None and new >= old)
    return field == "loop.stop_after_empty_rounds"


def growth_rule() -> str:
    return "; ".join(f"{field} ({rule})" for field, rule in GROWABLE.items())


def check_resumable_recipe(resolved: ResolvedRecipe, run_dir: Path) -> dict[str, list]:
    """A run continues only under the recipe that started it (seed, data and components included), grown at
    most as ``GROWABLE`` allows. Returns the growth: {field: [old, new]} ({} for the same recipe)."""
    stored = _as_this_version_reads_it(RunDir(run_dir).recipe())
    current = resolved.resolved_dict()
    changes = _differences(stored, current)
    mode = (current.get("loop") or {}).get("mode")
    refused = [f for f, (old, new) in changes.items() if not (f in GROWABLE and _may_grow(f, old, new, mode))]
    if refused:
        differ = f"{refused[0]} differs" if len(refused) == 1 else f"{', '.join(refused)} differ"
        raise LoopkitError(
            f"--resume {run_dir}: the run was made by a different recipe ({differ}); a resume may change only "
            f"{growth_rule()}; resume with the recipe it was made with (or none: loopkit run --resume RUN_DIR), "
            "or start a new run"
        )
    return changes


def _as_this_version_reads_it(stored: dict) -> dict:
    """A run's stored recipe with the defaults of fields this loopkit has and the one that wrote it lacked: a field
    added since the run started is no change (its default is what the run did), so an upgrade never stops a resume.
    (As stored, if this version cannot read it: the comparison then names what differs.)"""
    from loopkit.plugins import registry
    from loopkit.recipe import parse_recipe

    try:
        return parse_recipe(stored, "the run's recipe.yaml", registry()).resolved_dict()
    except LoopkitError:
        return stored


def _differences(a, b, path: str = "") -> dict[str, list]:
    """{dotted field: [a's value, b's value]} for every leaf where the two recipes differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        found: dict[str, list] = {}
        for key in sorted(set(a) | set(b), key=str):
            found.update(_differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key)))
        return found
    return {} if a == b else {path or "the recipe": [a, b]}


def checked_teacher(name: str, said: str | None, journaled: bool) -> str:
    """What ``--check-teacher`` found, as one line."""
    if said is None:
        return f"teacher {name}: nothing to check (it makes no calls)"
    where = ("journaled and charged to this run" if journaled else
             "validate has no run directory, so the call is in no journal and charged to no run")
    return f"teacher check: {said}; {where}"


def run_with_display(resolved: ResolvedRecipe, output: Path | None, console: Console, use_cache: bool = True,
                     resume: Path | None = None, command: dict | None = None, check_teacher: bool = False) -> RunResult:
    quiet_libraries()
    progress = RichProgress(console)
    growth: dict[str, list] = {}
    if resume is not None:
        growth = check_resumable_recipe(resolved, resume)
    else:
        RunDir.check_parent(output or resolved.recipe.output_dir)  # a bad --output fails before any model loads
    prepared = prepare(resolved)  # builds components and checks the data before anything is written
    for warning in prepared.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    prepared.load_student()  # a student that cannot load or be trained fails before a run directory exists
    loop = Loop(prepared, progress, use_cache=use_cache)
    run_dir: RunDir | None = None
    held = False  # whether this process took the run: one refused by its lock or its checks says no more than why
    try:
        if resume is not None:
            run_dir = RunDir(resume)
            done = loop.open(run_dir, resume=True)  # checks the run's files, then takes its lock; nothing written yet
            if growth:
                with stopping.deferred():  # recipe.yaml and its fingerprint change together
                    run_dir.grow(_recipe_text(resolved), growth, command)
                grown = ", ".join(f"{field} {old} -> {new}" for field, (old, new) in growth.items())
                console.print(f"growing {run_dir.path}: {grown}", highlight=False, markup=False)
            if done >= prepared.plan.last and not growth:
                console.print(f"{run_dir.path} is already complete (rounds 0-{done}); to extend it, resume it with a "
                              f"--set of {growth_rule()}", highlight=False, markup=False)
            else:
                console.print(f"resuming {run_dir.path} after round {done}", highlight=False, markup=False)
        else:
            with stopping.deferred():  # a run directory gets its header files (recipe, manifest) before a stop
                run_dir = start_run_dir(resolved, output, command)
            console.print(f"run directory: {run_dir.path}", highlight=False, markup=False)
        held = True
        stopping.on_exit_now(lambda: _tidy(run_dir))
        if check_teacher:
            if loop.run_dir is not run_dir:
                loop.open(run_dir)  # the teacher's journal, where the check call is recorded
            console.print(checked_teacher(resolved.recipe.teacher.name, loop.check_teacher(), True), highlight=False)
        with progress.bars:
            result = loop.run(run_dir, resume=resume is not None)
    except BaseException as exc:  # a stop (signal) or a crash: say what is safe on disk before the error is reported
        if run_dir is not None and (held or isinstance(exc, KeyboardInterrupt)):
            _tidy(run_dir)
            try:
                report_stop(console, run_dir)
            except OSError:  # a closed terminal (SIGHUP) takes no more output
                pass
        raise
    console.print(results_table(result))
    if result.stopped:
        console.print(f"[yellow]{escape(result.stopped)}[/]", highlight=False)
    return result


def dry_run(resolved: ResolvedRecipe, console: Console) -> None:
    """Print the plan and its expected spend; loads the task's data but no model."""
    from loopkit.budget import first_exceeded, round_cost

    recipe = resolved.recipe
    prepared = prepare(resolved)  # no plan for what cannot run
    data, plan = prepared.data, prepared.plan
    console.print(
        f"plan for {resolved.source}: task {recipe.task.name} ({len(data.pool)} seeds, {len(data.test)} test), "
        f"student {recipe.student.name}, teacher {recipe.teacher.name}, selector {recipe.selector.name}, "
        f"trainer {recipe.trainer.name}; {recipe.loop.mode}, {len(plan.rounds)} round(s), {plan.samples} samples",
        highlight=False,
    )
    table = Table("round", "samples", "teacher calls", "teacher tokens", "USD", "student passes over the pool",
                  title="expected spend (cumulative; tokens and USD are estimates that err high)")
    spent = {"samples": 0, "teacher_calls": 0, "teacher_tokens": 0.0, "usd": 0.0}
    caps = recipe.budget.model_dump()
    stop = None
    for planned in plan.rounds:
        cost = round_cost(prepared.teacher, plan.needs, data.pool, planned.samples, {})
        stop = first_exceeded(caps, spent, cost)
        if stop:
            stop = f"the budget stops the run before round {planned.number}: {stop}"
            break
        for currency, amount in cost.as_dict().items():
            spent[currency] += amount
        passes = f"{len(data.pool)} answers + signals" if plan.needs else "none (random seeds)"
        table.add_row(str(planned.number), str(spent["samples"]), str(spent["teacher_calls"]),
                      f"{spent['teacher_tokens']:,.0f}", f"{spent['usd']:.4f}", passes)
    console.print(table)
    console.print(stop or "within budget" if any(v is not None for v in caps.values()) else "no budget caps set",
                  highlight=False)
